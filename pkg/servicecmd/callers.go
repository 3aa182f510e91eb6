package servicecmd

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/jitid/jitid/pkg/callerauth"
	"github.com/jitid/jitid/pkg/grpcserver"
)

// ErrNoCallerAuthentication is returned (wrapping ErrInvalid) by
// OpenCallers for a service that could authenticate nobody: no mTLS and
// no bearer-token key sets.
var ErrNoCallerAuthentication = fmt.Errorf("%w: no way to authenticate callers: turn on mTLS (-tls-cert, -tls-key and -tls-bundle, or -spiffe-socket) or give -caller-jwks", ErrInvalid)

// CallerAuthEnabled reports whether the settings give the service a way to
// authenticate its callers: mTLS peers or bearer-token key sets.
func (c Common) CallerAuthEnabled() bool {
	return c.TLSEnabled() || len(c.CallerJWKS) > 0
}

// callerErrors returns the problems of the caller settings: a -caller-jwks
// entry that is not OWNER=FILE.
func (c Common) callerErrors() []error {
	var errs []error
	for _, e := range c.CallerJWKS {
		if _, err := callerauth.ParseKeyFile(e); err != nil {
			errs = append(errs, Invalid("caller-jwks", "%v", err))
		}
	}
	return errs
}

// Callers is a service's open bearer-token verifier; its zero value (no
// key sets) takes mTLS peers only.
type Callers struct {
	verifier *callerauth.Verifier
	jwt      *workloadapi.JWTSource
}

// OpenCallers opens what authenticates the service's callers: the
// -caller-jwks files (re-read when they change) and, with -spiffe-socket,
// the Workload API's JWT bundles, for bearer tokens. It fails with
// ErrNoCallerAuthentication when the service could authenticate nobody,
// so that such a service refuses to start. t is the service's TLS (nil
// without); Close the result when the service stops.
//
// A bearer token must name the service in "aud": one of -caller-audience,
// by default the service's SPIFFE ID when it has mTLS, else "jitid-<name>".
func (c Common) OpenCallers(ctx context.Context, name string, log *slog.Logger, t *TLS) (*Callers, error) {
	if !c.CallerAuthEnabled() {
		return nil, ErrNoCallerAuthentication
	}
	var files []callerauth.KeyFile
	for _, e := range c.CallerJWKS {
		f, err := callerauth.ParseKeyFile(e)
		if err != nil {
			return nil, Invalid("caller-jwks", "%v", err)
		}
		files = append(files, f)
	}
	cs := &Callers{}
	if c.SPIFFESocket != "" {
		wctx, cancel := context.WithTimeout(ctx, workloadWait)
		defer cancel()
		src, err := workloadapi.NewJWTSource(wctx, workloadapi.WithClientOptions(workloadapi.WithAddr(c.SPIFFESocket)))
		if err != nil {
			return nil, fmt.Errorf("spiffe workload api: jwt bundles: %w", err)
		}
		cs.jwt = src
	}
	if len(files) == 0 && cs.jwt == nil {
		return cs, nil
	}
	aud, err := c.callerAudiences(name, t)
	if err != nil {
		_ = cs.Close() // the audience error is the one to report
		return nil, err
	}
	cfg := callerauth.Config{Audiences: aud, Files: files, Logger: log}
	if cs.jwt != nil {
		cfg.Bundles = cs.jwt
	}
	if cs.verifier, err = callerauth.NewVerifier(cfg); err != nil {
		_ = cs.Close()
		return nil, Invalid("caller-jwks", "%v", err)
	}
	log.Info("bearer-token callers accepted", "audiences", aud, "key_files", len(files), "workload_api_bundles", cs.jwt != nil)
	return cs, nil
}

func (c Common) callerAudiences(name string, t *TLS) ([]string, error) {
	if len(c.CallerAudiences) > 0 {
		return c.CallerAudiences, nil
	}
	if t != nil {
		svid, err := t.source.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("caller audience: the service's SPIFFE ID: %w", err)
		}
		return []string{svid.ID.String()}, nil
	}
	return []string{"jitid-" + name}, nil
}

// Authenticator returns the authentication step of the service's
// interceptor chain: a bearer token's subject, else the mTLS peer, else
// Unauthenticated. A nil Callers takes mTLS peers only.
func (cs *Callers) Authenticator() grpcserver.Authenticator {
	if cs == nil {
		return callerauth.Authenticator(nil)
	}
	return callerauth.Authenticator(cs.verifier)
}

// Close stops re-reading the key files and closes the Workload API
// source; a nil Callers is a no-op.
func (cs *Callers) Close() error {
	if cs == nil {
		return nil
	}
	if cs.verifier != nil {
		_ = cs.verifier.Close() // stops polling; nothing to report
	}
	if cs.jwt != nil {
		return cs.jwt.Close()
	}
	return nil
}
