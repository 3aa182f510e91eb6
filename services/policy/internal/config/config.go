// Package config is the policy service's configuration: flags, each also
// settable by a JITID_ environment variable (pkg/envflag), checked once.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jitid/jitid/pkg/envflag"
)

// Config is the checked configuration of the policy service.
type Config struct {
	GRPCAddr  string
	AdminAddr string // empty: no admin HTTP server
	// Pprof serves runtime profiles on the admin server.
	Pprof bool
	// AuthZENAddr is the listen address of the AuthZEN HTTP endpoint;
	// empty turns it off.
	AuthZENAddr string
	// PolicyFile is a .cedar file or a directory of them; empty selects the
	// built-in default set.
	PolicyFile string
	LogLevel   slog.Level
	LogFormat  string
	// ReloadInterval is how often PolicyFile is polled for changes.
	ReloadInterval time.Duration
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Load parses args (without the program name) and the environment (getenv;
// os.Getenv when nil) into a checked Config. It returns flag.ErrHelp for
// -help.
func Load(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	var c Config
	var level string
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:50052", "gRPC listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9092", "admin HTTP address (/metrics, /healthz, /readyz); empty turns it off")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go runtime profiles (net/http/pprof) at /debug/pprof/ on -admin-addr; keep that address private")
	fs.StringVar(&c.AuthZENAddr, "authzen-addr", "127.0.0.1:8092", "OpenID AuthZEN 1.0 evaluation endpoints (POST /access/v1/evaluation and /access/v1/evaluations), HTTP; empty turns it off")
	fs.StringVar(&c.PolicyFile, "policy-file", "", "a .cedar file or a directory of them; the built-in default set when empty")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", 2*time.Second, "how often -policy-file is checked for changes")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	if err := envflag.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", ErrInvalid, fs.Args())
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("%w: -log-level %q: want debug, info, warn or error", ErrInvalid, level)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.Pprof && c.AdminAddr == "" {
		return fmt.Errorf("%w: -pprof needs -admin-addr", ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		return fmt.Errorf("%w: -grpc-addr %q: %w", ErrInvalid, c.GRPCAddr, err)
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			return fmt.Errorf("%w: -admin-addr %q: %w", ErrInvalid, c.AdminAddr, err)
		}
	}
	if c.ReloadInterval < 100*time.Millisecond {
		return fmt.Errorf("%w: -reload-interval %v: want at least 100ms", ErrInvalid, c.ReloadInterval)
	}
	if c.AuthZENAddr != "" {
		if _, _, err := net.SplitHostPort(c.AuthZENAddr); err != nil {
			return fmt.Errorf("%w: -authzen-addr %q: %w", ErrInvalid, c.AuthZENAddr, err)
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("%w: -log-format %q: want json or text", ErrInvalid, c.LogFormat)
	}
	return nil
}

// Logger returns the slog.Logger the configuration asks for, writing to w.
func (c Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
