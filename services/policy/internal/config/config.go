// Package config is the policy service's configuration: flags, each also
// settable by a JITID_ environment variable (pkg/envflag), checked once.
package config

import (
	"errors"
	"flag"
	"io"
	"time"

	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
)

// Config is the checked configuration of the policy service.
type Config struct {
	// Common to every service: addresses, pprof, logging.
	servicecmd.Common
	// AuthZENAddr is the listen address of the AuthZEN HTTP endpoint;
	// empty turns it off.
	AuthZENAddr string
	// PolicyFile is a .cedar file or a directory of them; empty selects the
	// built-in default set.
	PolicyFile string
	// ReloadInterval is how often PolicyFile is polled for changes.
	ReloadInterval time.Duration
	// Evaluators are the callers (SPIFFE IDs or bearer-token subjects)
	// that may call Evaluate, Explain and AuthZEN: the issuer's SPIFFE ID.
	// Admins (-admins) may too, and only they may set the decision time.
	Evaluators []string
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = servicecmd.ErrInvalid

// Load parses args (without the program name) and the environment
// (lookupEnv; os.LookupEnv when nil) into a checked Config, reporting every
// bad setting at once. -help prints the flags to output and returns
// flag.ErrHelp; -version returns servicecmd.ErrVersion.
func Load(args []string, lookupEnv func(string) (string, bool), output io.Writer) (Config, error) {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	if output != nil {
		fs.SetOutput(output)
	}
	var c Config
	common := servicecmd.AddFlags(fs, &c.Common, "127.0.0.1:50052", "127.0.0.1:9092")
	fs.StringVar(&c.AuthZENAddr, "authzen-addr", "127.0.0.1:8092", "OpenID AuthZEN 1.0 evaluation endpoints (POST /access/v1/evaluation and /access/v1/evaluations): HTTPS with client certificates when TLS is on, else plain HTTP on loopback only (which answers every evaluation 401); empty turns it off")
	fs.StringVar(&c.PolicyFile, "policy-file", "", "a .cedar file or a directory of them; the built-in default set when empty")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", 2*time.Second, "how often -policy-file is checked for changes")
	fs.Func("evaluators", "comma-separated callers allowed to call Evaluate, Explain and AuthZEN: the issuer's SPIFFE ID (e.g. spiffe://acme.example/jitid/issuer); -admins may too", func(v string) error {
		c.Evaluators = servicecmd.SplitList(v)
		return nil
	})
	if err := common.Parse(args, lookupEnv); err != nil {
		return Config{}, err
	}
	if err := errors.Join(append(common.Errors(), c.validate()...)...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// validate returns the problems of policy's own settings.
func (c Config) validate() []error {
	var errs []error
	if c.ReloadInterval < 100*time.Millisecond {
		errs = append(errs, servicecmd.Invalid("reload-interval", "%v: want at least 100ms", c.ReloadInterval))
	}
	if c.AuthZENAddr != "" {
		if err := servicecmd.CheckHostPort("authzen-addr", c.AuthZENAddr); err != nil {
			errs = append(errs, err)
		} else if !c.TLSEnabled() {
			// Without TLS the endpoint has no caller to authorize and
			// refuses every evaluation; it stays on loopback whatever
			// -insecure says.
			if mtls.CheckPlaintextListen(c.AuthZENAddr, false) != nil {
				errs = append(errs, servicecmd.Invalid("authzen-addr", "%s is not a loopback address: without TLS the AuthZEN endpoint is plain HTTP and listens on loopback only, whatever -insecure says; give -tls-* or -spiffe-socket for HTTPS with client certificates", c.AuthZENAddr))
			}
		}
	}
	return errs
}
