// Package config is the audit service's configuration: one typed Config,
// read from flags and JITID_* environment variables and validated once.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/eventbus"
)

// ErrInvalid reports a setting that cannot work; the message names it.
var ErrInvalid = errors.New("config: invalid")

// Config is every setting of the audit service. docs/configuration.md is
// the reference for operators.
type Config struct {
	GRPCAddr  string
	AdminAddr string
	// Pprof serves runtime profiles on the admin server.
	Pprof bool
	// AuditDSN is sqlite://<path> or postgres://….
	AuditDSN      string
	NATSURL       string
	Stream        string
	SubjectPrefix string
	// Consumer is the durable consumer name, shared by audit replicas so
	// that each event is handled by one of them.
	Consumer string
	// AckWait is how long JetStream waits for the ack of an event handed to
	// a replica before it hands it out again: the delay before events that
	// were in flight when a replica died reach the log.
	AckWait   time.Duration
	LogLevel  slog.Level
	LogFormat string
}

// Load parses args (without the program name) and the environment seen
// through getenv (os.Getenv when nil), then validates the result.
func Load(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	if output != nil {
		fs.SetOutput(output)
	}
	var c Config
	var level string
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:50053", "gRPC listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9093", "admin HTTP address (/metrics, /healthz, /readyz); empty turns it off")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go runtime profiles (net/http/pprof) at /debug/pprof/ on -admin-addr; keep that address private")
	fs.StringVar(&c.AuditDSN, "audit-dsn", "sqlite://jitid-audit.db", "audit log store: sqlite://<path> or postgres://…")
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s) with JetStream")
	fs.StringVar(&c.Stream, "stream", eventbus.DefaultStream, "JetStream stream to consume")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", eventbus.DefaultSubjectPrefix, "subject prefix of the stream")
	fs.StringVar(&c.Consumer, "consumer", "audit", "durable consumer name, shared by audit replicas")
	fs.DurationVar(&c.AckWait, "ack-wait", 10*time.Second, "redelivery delay of an unacknowledged event (a replica that died holding it); longer than a batch takes to store")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	if err := envflag.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("%w: -log-level %q: want debug, info, warn or error", ErrInvalid, level)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) validate() error {
	var errs []error
	need := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%w: -%s is empty", ErrInvalid, name))
		}
	}
	need("grpc-addr", c.GRPCAddr)
	need("audit-dsn", c.AuditDSN)
	need("nats-url", c.NATSURL)
	need("stream", c.Stream)
	need("subject-prefix", c.SubjectPrefix)
	need("consumer", c.Consumer)
	if c.Pprof && c.AdminAddr == "" {
		errs = append(errs, fmt.Errorf("%w: -pprof needs -admin-addr", ErrInvalid))
	}
	if c.AuditDSN != "" && !strings.HasPrefix(c.AuditDSN, "sqlite://") &&
		!strings.HasPrefix(c.AuditDSN, "postgres://") && !strings.HasPrefix(c.AuditDSN, "postgresql://") {
		errs = append(errs, fmt.Errorf("%w: -audit-dsn: want sqlite://<path> or postgres://…", ErrInvalid))
	}
	// A durable name becomes part of NATS subjects, so these would
	// break it.
	if strings.ContainsAny(c.Consumer, ". *>\t") {
		errs = append(errs, fmt.Errorf("%w: -consumer %q: no dots, spaces or wildcards", ErrInvalid, c.Consumer))
	}
	if strings.ContainsAny(c.SubjectPrefix, " *>") || strings.HasSuffix(c.SubjectPrefix, ".") {
		errs = append(errs, fmt.Errorf("%w: -subject-prefix %q: no spaces, wildcards or trailing dot", ErrInvalid, c.SubjectPrefix))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("%w: -ack-wait %v: at least 1s, or a slow batch is delivered twice", ErrInvalid, c.AckWait))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("%w: -log-format %q: want json or text", ErrInvalid, c.LogFormat))
	}
	return errors.Join(errs...)
}

// Logger returns the slog logger the settings ask for.
func (c Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// EventBus returns the stream and subject names in effect.
func (c Config) EventBus() eventbus.Config {
	return eventbus.Config{Stream: c.Stream, SubjectPrefix: c.SubjectPrefix}
}
