// Package servicecmd is what the three jitid service binaries share on
// their command line: the common flags (gRPC and admin addresses, pprof,
// log level and format, mTLS, bearer-token callers, limits, -version) and
// their checks, the logger they ask
// for, the build's version string, and Main, which runs a service until
// SIGINT or SIGTERM and turns its error into an exit code.
package servicecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
)

// ErrInvalid is wrapped by every error that reports a setting that cannot
// work; the message names the flag.
var ErrInvalid = errors.New("invalid configuration")

// ErrVersion is returned by Parse for -version: the caller prints Version
// and exits successfully, as for flag.ErrHelp.
var ErrVersion = errors.New("version requested")

// Common is the configuration every jitid service takes.
type Common struct {
	GRPCAddr string
	// AdminAddr is the admin HTTP address (/metrics, /healthz, /readyz);
	// empty turns the admin server off.
	AdminAddr string
	// Pprof serves runtime profiles on the admin server.
	Pprof     bool
	LogLevel  slog.Level
	LogFormat string // "json" or "text"

	// TLSCert, TLSKey and TLSBundle are the PEM files of the service's
	// X.509 SVID, its key and the trust bundle, re-read when they change.
	TLSCert, TLSKey, TLSBundle string
	// SPIFFESocket is the SPIFFE Workload API endpoint, the alternative to
	// the files.
	SPIFFESocket string
	// Insecure allows a plaintext gRPC listener on a non-loopback address.
	Insecure bool
	// AllowedClients are the SPIFFE IDs ("spiffe://td/path") and trust
	// domains ("spiffe://td") the gRPC server accepts over mTLS.
	AllowedClients []string
	// Admins are the callers (SPIFFE IDs or bearer-token subjects) allowed
	// to act across platforms: revoke by agent or delegator for anyone,
	// list anyone's credentials, set a decision time for replay.
	Admins []string
	// CallerJWKS are the bearer-token key sets, "OWNER=FILE" each: FILE a
	// JWKS of public keys re-read when it changes, OWNER the callers it
	// vouches for: "spiffe://<td>" (JWT-SVIDs of that trust domain) or a
	// client id (RFC 7523 client assertions with iss == sub == it).
	CallerJWKS []string
	// CallerAudiences are the "aud" values a bearer token may name the
	// service with; empty is the service's SPIFFE ID with mTLS, else
	// "jitid-<name>".
	CallerAudiences []string
	// Limits bound what one client can hold of the gRPC server, and each
	// caller's rate; zero fields take grpcserver's defaults.
	Limits grpcserver.Limits
}

// Flags are the common flags on a service's flag set, filling a Common.
type Flags struct {
	c       *Common
	fs      *flag.FlagSet
	level   string
	version bool
}

// AddFlags adds the common flags to fs, filling c, with the service's
// default addresses. The service adds its own flags to fs, then calls
// Parse.
func AddFlags(fs *flag.FlagSet, c *Common, grpcAddr, adminAddr string) *Flags {
	f := &Flags{c: c, fs: fs}
	fs.StringVar(&c.GRPCAddr, "grpc-addr", grpcAddr, "gRPC listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", adminAddr, "admin HTTP address (/metrics, /healthz, /readyz); empty turns it off")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go runtime profiles (net/http/pprof) at /debug/pprof/ on -admin-addr; keep that address private")
	fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM X.509 SVID (leaf with one spiffe:// URI SAN, then intermediates); with -tls-key and -tls-bundle turns on mTLS, re-read when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PKCS#8 PEM private key of -tls-cert (mode 0600)")
	fs.StringVar(&c.TLSBundle, "tls-bundle", "", "PEM CA certificates peers are verified against")
	fs.StringVar(&c.SPIFFESocket, "spiffe-socket", "", "SPIFFE Workload API endpoint (unix:///path); turns on mTLS with the agent's SVIDs instead of -tls-* files")
	fs.BoolVar(&c.Insecure, mtls.InsecureFlag, false, "allow a plaintext gRPC listener on a non-loopback address")
	fs.Func("allowed-clients", "comma-separated SPIFFE IDs (spiffe://td/path) or trust domains (spiffe://td) the gRPC server accepts; required with mTLS", func(v string) error {
		c.AllowedClients = SplitList(v)
		return nil
	})
	fs.Func("admins", "comma-separated callers (SPIFFE IDs or bearer-token subjects) allowed to act across platforms", func(v string) error {
		c.Admins = SplitList(v)
		return nil
	})
	fs.Func("caller-jwks", "comma-separated OWNER=FILE bearer-token key sets: FILE a JWKS of public keys (re-read when it changes) vouching for OWNER: spiffe://<td> (JWT-SVIDs of that trust domain) or a client id (RFC 7523 client assertions, iss == sub == client id)", func(v string) error {
		c.CallerJWKS = SplitList(v)
		return nil
	})
	fs.Func("caller-audience", "comma-separated audiences a bearer token may name this service by (its aud); default the service's SPIFFE ID with mTLS, else jitid-<service>", func(v string) error {
		c.CallerAudiences = SplitList(v)
		return nil
	})
	fs.Func("rate-limit", fmt.Sprintf("calls per second one authenticated caller may make (answered RESOURCE_EXHAUSTED above it); 0 is %d, off turns the limit off", grpcserver.DefaultCallerRate), func(v string) error {
		if strings.TrimSpace(v) == "off" {
			c.Limits.CallerRate = grpcserver.NoRateLimit
			return nil
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return fmt.Errorf("%q: want a number of calls per second, 0 (the default) or off", v)
		}
		c.Limits.CallerRate = r
		return nil
	})
	fs.IntVar(&c.Limits.CallerBurst, "rate-burst", 0, fmt.Sprintf("calls one caller may make at once above -rate-limit; 0 is %d", grpcserver.DefaultCallerBurst))
	// The limits default to 0, which grpcserver reads as its default, so
	// that a Common built without flags gets the same limits.
	fs.IntVar(&c.Limits.MaxRequestBytes, "max-request-bytes", 0, fmt.Sprintf("largest gRPC request message in bytes, answered RESOURCE_EXHAUSTED above it; 0 is %d", grpcserver.DefaultMaxRequestBytes))
	fs.Func("max-concurrent-streams", fmt.Sprintf("most gRPC calls in flight on one connection; 0 is %d", grpcserver.DefaultMaxConcurrentStreams), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		c.Limits.MaxConcurrentStreams = uint32(n)
		return nil
	})
	fs.IntVar(&c.Limits.MaxConnections, "max-connections", 0, fmt.Sprintf("most gRPC connections open at once, further ones wait to be accepted; 0 is %d", grpcserver.DefaultMaxConnections))
	fs.DurationVar(&c.Limits.KeepaliveMinTime, "keepalive-min-time", 0, fmt.Sprintf("shortest keepalive ping interval a client may use, a client pinging faster or with no call open is disconnected; 0 is %s", grpcserver.DefaultKeepaliveMinTime))
	fs.DurationVar(&c.Limits.MaxConnectionIdle, "max-connection-idle", 0, fmt.Sprintf("close a gRPC connection with no call for this long; 0 is %s", grpcserver.DefaultMaxConnectionIdle))
	return f
}

// Parse parses args and the environment (lookupEnv; os.LookupEnv when nil)
// into the flag set. It returns flag.ErrHelp for -help, ErrVersion for
// -version, and an error for a flag or variable that does not parse as its
// type or for arguments left over. The values are checked by Errors and
// Common.Validate, which report every problem at once.
func (f *Flags) Parse(args []string, lookupEnv func(string) (string, bool)) error {
	if err := envflag.Parse(f.fs, args, lookupEnv, "version"); err != nil {
		return err
	}
	if f.version {
		return ErrVersion
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrInvalid, f.fs.Args())
	}
	// A bad name leaves the level at info; Errors reports it.
	_ = f.c.LogLevel.UnmarshalText([]byte(f.level))
	return nil
}

// Errors returns every problem of the common settings after Parse.
func (f *Flags) Errors() []error {
	var errs []error
	var l slog.Level
	if err := l.UnmarshalText([]byte(f.level)); err != nil {
		errs = append(errs, Invalid("log-level", "%q: want debug, info, warn or error", f.level))
	}
	return append(errs, f.c.Validate()...)
}

// Validate returns every problem of the common settings but the log level,
// which Parse has already turned into a slog.Level.
func (c Common) Validate() []error {
	var errs []error
	errs = appendErr(errs, CheckHostPort("grpc-addr", c.GRPCAddr))
	if c.AdminAddr != "" {
		errs = appendErr(errs, CheckHostPort("admin-addr", c.AdminAddr))
	} else if c.Pprof {
		errs = append(errs, Invalid("pprof", "needs -admin-addr"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, Invalid("log-format", "%q: want json or text", c.LogFormat))
	}
	if c.Limits.MaxRequestBytes < 0 {
		errs = append(errs, Invalid("max-request-bytes", "%d: want 0 (the default) or more", c.Limits.MaxRequestBytes))
	}
	if c.Limits.MaxConnections < 0 {
		errs = append(errs, Invalid("max-connections", "%d: want 0 (the default) or more", c.Limits.MaxConnections))
	}
	if c.Limits.KeepaliveMinTime < 0 {
		errs = append(errs, Invalid("keepalive-min-time", "%s: want 0 (the default) or more", c.Limits.KeepaliveMinTime))
	}
	if c.Limits.MaxConnectionIdle < 0 {
		errs = append(errs, Invalid("max-connection-idle", "%s: want 0 (the default) or more", c.Limits.MaxConnectionIdle))
	}
	if c.Limits.CallerBurst < 0 {
		errs = append(errs, Invalid("rate-burst", "%d: want 0 (the default) or more", c.Limits.CallerBurst))
	}
	errs = append(errs, c.callerErrors()...)
	return append(errs, c.validateTLS()...)
}

// SplitList splits a comma-separated flag value, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func appendErr(errs []error, err error) []error {
	if err != nil {
		return append(errs, err)
	}
	return errs
}

// Invalid returns an error wrapping ErrInvalid that names flag.
func Invalid(flag, format string, args ...any) error {
	return fmt.Errorf("%w: -%s: %s", ErrInvalid, flag, fmt.Sprintf(format, args...))
}

// CheckHostPort returns an Invalid error unless addr is host:port.
func CheckHostPort(flag, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Invalid(flag, "%q is not host:port", addr)
	}
	return nil
}

// Logger returns the logger the settings ask for, writing to w.
func (c Common) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// ServerOptions returns the grpcserver options the settings ask for. With
// t (from OpenTLS) the gRPC server speaks mTLS to the allowed clients only;
// with nil it is plaintext. Every call needs a caller (callers, from
// OpenCallers): a verified bearer token's subject, else the mTLS peer's
// SPIFFE ID. The admin server is plaintext either way.
func (c Common) ServerOptions(name string, log *slog.Logger, t *TLS, callers *Callers) grpcserver.Options {
	opts := t.apply(grpcserver.Options{Name: name, GRPCAddr: c.GRPCAddr, AdminAddr: c.AdminAddr, Pprof: c.Pprof, Logger: log, Limits: c.Limits})
	opts.Authenticate = callers.Authenticator()
	return opts
}

// Version returns the build's version string: the main module's version,
// its VCS revision and time when built from a checkout ("+dirty" for
// uncommitted changes), and the Go version.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	parts := []string{name, bi.Main.Version}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		parts = append(parts, "rev "+rev[:min(len(rev), 12)]+dirty)
	}
	if at != "" {
		parts = append(parts, at)
	}
	return strings.Join(append(parts, bi.GoVersion), " ")
}

// Env is what a service command takes from its process.
type Env struct {
	Args      []string // without the program name
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv func(string) (string, bool)
}

// Main runs a service: ctx ends on SIGINT or SIGTERM, and run's error
// decides the exit code (ExitCode).
func Main(name string, run func(context.Context, Env) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv})
	stop()
	os.Exit(ExitCode(name, err, os.Stdout, os.Stderr))
}

// ExitCode returns the exit code of a service whose run returned err: 0 for
// nil, for -help and for -version (the version is printed to stdout); 1
// otherwise, with the error printed to stderr.
func ExitCode(name string, err error, stdout, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrVersion):
		fmt.Fprintln(stdout, Version(name))
		return 0
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}
