// Package config is the audit service's configuration: one typed Config,
// read from flags and JITID_* environment variables and validated once.
package config

import (
	"errors"
	"flag"
	"io"
	"strings"
	"time"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/pkg/storeauth"
)

// ErrInvalid reports a setting that cannot work; the message names it.
var ErrInvalid = servicecmd.ErrInvalid

// Config is every setting of the audit service. docs/configuration.md is
// the reference for operators.
type Config struct {
	// Common to every service: addresses, pprof, logging.
	servicecmd.Common
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
	AckWait time.Duration
	// NATSAuth is how the service authenticates to NATS: secrets come
	// from files only.
	NATSAuth storeauth.NATS
	// Auditors are the callers (SPIFFE IDs or bearer-token subjects) that
	// may read the log, besides the admins.
	Auditors []string
}

// Load parses args (without the program name) and the environment seen
// through lookupEnv (os.LookupEnv when nil), then validates the result,
// reporting every bad setting at once. -help returns flag.ErrHelp and
// -version servicecmd.ErrVersion.
func Load(args []string, lookupEnv func(string) (string, bool), output io.Writer) (Config, error) {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	if output != nil {
		fs.SetOutput(output)
	}
	var c Config
	common := servicecmd.AddFlags(fs, &c.Common, "127.0.0.1:50053", "127.0.0.1:9093")
	fs.StringVar(&c.AuditDSN, "audit-dsn", "sqlite://jitid-audit.db", "audit log store: sqlite://<path> or postgres://…")
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s) with JetStream")
	c.NATSAuth.AddFlags(fs)
	fs.StringVar(&c.Stream, "stream", eventbus.DefaultStream, "JetStream stream to consume")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", eventbus.DefaultSubjectPrefix, "subject prefix of the stream")
	fs.StringVar(&c.Consumer, "consumer", "audit", "durable consumer name, shared by audit replicas")
	fs.Func("auditors", "comma-separated callers (SPIFFE IDs or bearer-token subjects) that may read the log (QueryEvents, TailEvents, VerifyLog), besides -admins", func(v string) error {
		c.Auditors = servicecmd.SplitList(v)
		return nil
	})
	fs.DurationVar(&c.AckWait, "ack-wait", 10*time.Second, "redelivery delay of an unacknowledged event (a replica that died holding it); longer than a batch takes to store")
	if err := common.Parse(args, lookupEnv); err != nil {
		return Config{}, err
	}
	if err := errors.Join(append(common.Errors(), c.validate()...)...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// validate returns the problems of the audit service's own settings.
func (c Config) validate() []error {
	var errs []error
	need := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, servicecmd.Invalid(name, "is empty"))
		}
	}
	need("audit-dsn", c.AuditDSN)
	need("nats-url", c.NATSURL)
	need("stream", c.Stream)
	need("subject-prefix", c.SubjectPrefix)
	need("consumer", c.Consumer)
	if c.AuditDSN != "" && !strings.HasPrefix(c.AuditDSN, "sqlite://") &&
		!strings.HasPrefix(c.AuditDSN, "postgres://") && !strings.HasPrefix(c.AuditDSN, "postgresql://") {
		errs = append(errs, servicecmd.Invalid("audit-dsn", "want sqlite://<path> or postgres://…"))
	}
	// A durable name becomes part of NATS subjects, so these would
	// break it.
	if strings.ContainsAny(c.Consumer, ". *>\t") {
		errs = append(errs, servicecmd.Invalid("consumer", "%q: no dots, spaces or wildcards", c.Consumer))
	}
	if strings.ContainsAny(c.SubjectPrefix, " *>") || strings.HasSuffix(c.SubjectPrefix, ".") {
		errs = append(errs, servicecmd.Invalid("subject-prefix", "%q: no spaces, wildcards or trailing dot", c.SubjectPrefix))
	}
	if c.AckWait < time.Second {
		errs = append(errs, servicecmd.Invalid("ack-wait", "%v: at least 1s, or a slow batch is delivered twice", c.AckWait))
	}
	return append(errs, c.NATSAuth.Validate()...)
}

// Readers returns the callers that may read the log: the auditors and the
// admins.
func (c Config) Readers() []string {
	return append(append([]string(nil), c.Auditors...), c.Admins...)
}

// EventBus returns the stream and subject names in effect.
func (c Config) EventBus() eventbus.Config {
	return eventbus.Config{Stream: c.Stream, SubjectPrefix: c.SubjectPrefix}
}
