package servicecmd

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
)

// TLSEnabled reports whether the settings ask for mTLS: certificate files
// or a SPIFFE Workload API socket.
func (c Common) TLSEnabled() bool {
	return c.TLSCert != "" || c.TLSKey != "" || c.TLSBundle != "" || c.SPIFFESocket != ""
}

// SourceErrors returns every problem of the certificate source settings:
// -tls-cert, -tls-key and -tls-bundle given only in part, or together with
// -spiffe-socket, or a socket that is not a unix:// or tcp:// address. A
// command-line client that takes those flags checks them with it.
func (c Common) SourceErrors() []error {
	var errs []error
	files := map[string]string{"tls-cert": c.TLSCert, "tls-key": c.TLSKey, "tls-bundle": c.TLSBundle}
	if c.TLSCert != "" || c.TLSKey != "" || c.TLSBundle != "" {
		for _, name := range []string{"tls-cert", "tls-key", "tls-bundle"} {
			if files[name] == "" {
				errs = append(errs, Invalid(name, "is required with -tls-cert, -tls-key or -tls-bundle (the three files go together)"))
			}
		}
		if c.SPIFFESocket != "" {
			errs = append(errs, Invalid("spiffe-socket", "give either the Workload API socket or the -tls-* files, not both"))
		}
	}
	if c.SPIFFESocket != "" && !strings.HasPrefix(c.SPIFFESocket, "unix://") && !strings.HasPrefix(c.SPIFFESocket, "tcp://") {
		errs = append(errs, Invalid("spiffe-socket", "%q: want unix:///path or tcp://host:port", c.SPIFFESocket))
	}
	return errs
}

// validateTLS returns every problem of the TLS settings: those of
// SourceErrors, -insecure next to TLS, an allow-list without TLS or a bad
// one with it, and a plaintext gRPC listen address that is not loopback
// without -insecure.
func (c Common) validateTLS() []error {
	errs := c.SourceErrors()
	if !c.TLSEnabled() {
		if len(c.AllowedClients) > 0 {
			errs = append(errs, Invalid("allowed-clients", "needs TLS (-tls-cert, -tls-key, -tls-bundle or -spiffe-socket)"))
		}
		// A malformed address is reported by CheckHostPort already.
		if CheckHostPort("grpc-addr", c.GRPCAddr) == nil {
			if err := mtls.CheckPlaintextListen(c.GRPCAddr, c.Insecure); err != nil {
				errs = append(errs, fmt.Errorf("%w: -grpc-addr: %w", ErrInvalid, err))
			}
		}
		return errs
	}
	if c.Insecure {
		errs = append(errs, Invalid(mtls.InsecureFlag, "cannot be combined with TLS"))
	}
	if _, err := mtls.ParseAllowList(c.AllowedClients); err != nil {
		errs = append(errs, Invalid("allowed-clients", "%v", err))
	}
	return errs
}

// workloadWait bounds how long a service waits at start for the Workload
// API's first SVID.
const workloadWait = 30 * time.Second

// TLS is a service's open certificate source and its server allow-list;
// nil when the service runs in plaintext.
type TLS struct {
	source  mtls.Source
	clients mtls.Authorizer
	close   func() error
}

// OpenTLS opens the certificate source the settings name (the files,
// re-read when they change, or the Workload API) and returns nil when TLS
// is off. Close it when the service stops. Without AllowedClients (a
// command-line client) a server built on it would refuse every client.
func (c Common) OpenTLS(ctx context.Context, log *slog.Logger) (*TLS, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	var clients mtls.Authorizer
	if len(c.AllowedClients) > 0 {
		var err error
		if clients, err = mtls.ParseAllowList(c.AllowedClients); err != nil {
			return nil, Invalid("allowed-clients", "%v", err)
		}
	}
	if c.SPIFFESocket != "" {
		// A service without an SVID cannot serve: give the agent a while,
		// then fail the start with the reason.
		ctx, cancel := context.WithTimeout(ctx, workloadWait)
		defer cancel()
		src, err := mtls.NewWorkloadSource(ctx, mtls.WorkloadConfig{Addr: c.SPIFFESocket})
		if err != nil {
			return nil, fmt.Errorf("spiffe workload api: %w", err)
		}
		return &TLS{source: src, clients: clients, close: src.Close}, nil
	}
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, BundleFile: c.TLSBundle, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("tls files: %w", err)
	}
	return &TLS{source: src, clients: clients, close: src.Close}, nil
}

// ClientCredentials returns the credentials of a client that talks only to
// a server whose SPIFFE ID the allow-list (IDs or trust domains) accepts.
func (t *TLS) ClientCredentials(server []string) (credentials.TransportCredentials, error) {
	authz, err := mtls.ParseAllowList(server)
	if err != nil {
		return nil, err
	}
	return mtls.ClientCredentials(t.source, authz), nil
}

// ServerTLSConfig returns the TLS configuration of a further (HTTP)
// listener of the service: the same certificate source and client
// allow-list as the gRPC server, TLS 1.3 with a client certificate
// required.
func (t *TLS) ServerTLSConfig() *tls.Config { return mtls.ServerTLSConfig(t.source, t.clients) }

// Close stops the certificate source; a nil TLS is a no-op.
func (t *TLS) Close() error {
	if t == nil {
		return nil
	}
	return t.close()
}

// apply makes opts serve mTLS to the allowed clients only.
func (t *TLS) apply(opts grpcserver.Options) grpcserver.Options {
	if t == nil {
		return opts
	}
	opts.Credentials = mtls.ServerCredentials(t.source, t.clients)
	return opts
}
