// Package eventbus is the wire contract of jitid's lifecycle events on NATS
// JetStream: subject names, the CloudEvents 1.0 structured JSON envelope and
// the stream that holds them. The issuer encodes with it; audit and any SIEM
// bridge decode with it.
package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/jitid/jitid/pkg/eventbus/internal/eventjson"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

const (
	// DefaultStream is the JetStream stream that holds lifecycle events.
	DefaultStream = "JITID_EVENTS"
	// DefaultSubjectPrefix is the prefix of every lifecycle event subject.
	DefaultSubjectPrefix = "jitid.events"
	// DefaultSource is the CloudEvents source of events from the issuer.
	DefaultSource = "urn:jitid:issuer"
	// ContentType is the CloudEvents structured JSON media type.
	ContentType = "application/cloudevents+json"
	// SpecVersion is the CloudEvents version of the envelope.
	SpecVersion = eventjson.SpecVersion
	// DefaultDuplicateWindow is how long JetStream remembers a Nats-Msg-Id.
	// It bounds how late an outbox relay may retry a publish and still be
	// deduplicated by the server; audit deduplicates by event id forever.
	DefaultDuplicateWindow = 10 * time.Minute
)

// ErrMalformed reports a message that is not a jitid lifecycle event envelope.
var ErrMalformed = errors.New("eventbus: malformed event")

// Config names the stream and subjects. The zero value means the defaults;
// tests give each run its own names so that they can share one server.
type Config struct {
	Stream        string
	SubjectPrefix string
	// Replicas is the JetStream replica count of the stream (1 when zero).
	Replicas int
	// MaxAge bounds how long the stream keeps events (unlimited when zero).
	MaxAge time.Duration
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// StreamName returns the stream name in effect.
func (c Config) StreamName() string { return c.withDefaults().Stream }

// Wildcard returns the subject filter covering every event, e.g. "jitid.events.>".
func (c Config) Wildcard() string { return c.withDefaults().SubjectPrefix + ".>" }

// Subject returns the subject of an event type, e.g.
// "jitid.events.credential.issued" for EVENT_TYPE_CREDENTIAL_ISSUED.
func (c Config) Subject(t eventsv1.EventType) string {
	return c.withDefaults().SubjectPrefix + "." + subjectSuffix(t)
}

func subjectSuffix(t eventsv1.EventType) string {
	switch t {
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED:
		return "credential.issued"
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED:
		return "credential.denied"
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED:
		return "credential.exchanged"
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED:
		return "credential.revoked"
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED:
		return "credential.expired"
	case eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED:
		return "task.completed"
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED:
		return "credential.use_refused"
	default:
		return "unknown"
	}
}

// CloudEventType returns the CloudEvents type of an event type, e.g.
// "dev.jitid.credential.issued.v1".
func CloudEventType(t eventsv1.EventType) string {
	if s, ok := cloudEventTypes[t]; ok {
		return s
	}
	return cloudEventType(t)
}

func cloudEventType(t eventsv1.EventType) string {
	return "dev.jitid." + subjectSuffix(t) + ".v1"
}

// cloudEventTypes holds CloudEventType of every known type, so that
// Encode and Decode do not build the string for every event.
var cloudEventTypes = func() map[eventsv1.EventType]string {
	m := make(map[eventsv1.EventType]string, len(eventsv1.EventType_name))
	for v := range eventsv1.EventType_name {
		m[eventsv1.EventType(v)] = cloudEventType(eventsv1.EventType(v))
	}
	return m
}()

// EventTypeFromCloudEventType is the inverse of CloudEventType.
func EventTypeFromCloudEventType(s string) (eventsv1.EventType, bool) {
	for v := range eventsv1.EventType_name {
		t := eventsv1.EventType(v)
		if t != eventsv1.EventType_EVENT_TYPE_UNSPECIFIED && CloudEventType(t) == s {
			return t, true
		}
	}
	return eventsv1.EventType_EVENT_TYPE_UNSPECIFIED, false
}

// Envelope is the CloudEvents 1.0 structured JSON form of a lifecycle event.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// Encode returns the CloudEvents envelope of ev. The subject is the
// credential id, or the task id for events without a credential. The data
// is what protojson writes for ev, without spaces and with map entries
// sorted. Like protojson, Encode refuses strings that are not valid UTF-8
// (the source included) and timestamps or durations out of protobuf's
// range.
func Encode(source string, ev *eventsv1.LifecycleEvent) ([]byte, error) {
	// Most events fit here; the result is then the one allocation.
	var buf [2048]byte
	b, err := AppendEncode(buf[:0], source, ev)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// AppendEncode appends the envelope that Encode returns to dst. On error
// it returns dst unchanged.
func AppendEncode(dst []byte, source string, ev *eventsv1.LifecycleEvent) ([]byte, error) {
	if ev.GetId() == "" {
		return dst, fmt.Errorf("%w: no event id", ErrMalformed)
	}
	if ev.GetType() == eventsv1.EventType_EVENT_TYPE_UNSPECIFIED {
		return dst, fmt.Errorf("%w: no event type", ErrMalformed)
	}
	if source == "" {
		source = DefaultSource
	}
	b, err := eventjson.AppendEnvelope(dst, source, CloudEventType(ev.GetType()), ev)
	if err != nil {
		return dst, fmt.Errorf("eventbus: encode event %q: %w", ev.GetId(), err)
	}
	return b, nil
}

// Decode parses a CloudEvents envelope and returns its lifecycle event. The
// envelope id and type must agree with the event's own. Decode accepts
// what encoding/json (for the envelope) and protojson (for the data, with
// unknown fields ignored) accept; the envelopes Encode writes take a path
// that does without either.
func Decode(b []byte) (*eventsv1.LifecycleEvent, error) {
	if attrs, ev, ok := eventjson.ParseEnvelope(b); ok &&
		string(attrs.SpecVersion) == SpecVersion && ev.GetId() != "" &&
		string(attrs.ID) == ev.GetId() && string(attrs.Type) == CloudEventType(ev.GetType()) {
		return ev, nil
	}
	// Anything else, valid or not, is for the general decoders, which also
	// give the errors.
	return decodeGeneral(b)
}

func decodeGeneral(b []byte) (*eventsv1.LifecycleEvent, error) {
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err) //nolint:errorlint // only ErrMalformed is for callers to match; the cause is detail
	}
	if env.SpecVersion != SpecVersion {
		return nil, fmt.Errorf("%w: specversion %q", ErrMalformed, env.SpecVersion)
	}
	ev := &eventsv1.LifecycleEvent{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(env.Data, ev); err != nil {
		return nil, fmt.Errorf("%w: data: %v", ErrMalformed, err) //nolint:errorlint // only ErrMalformed is for callers to match; the cause is detail
	}
	if ev.GetId() == "" || ev.GetId() != env.ID {
		return nil, fmt.Errorf("%w: envelope id %q and event id %q differ", ErrMalformed, env.ID, ev.GetId())
	}
	if CloudEventType(ev.GetType()) != env.Type {
		return nil, fmt.Errorf("%w: envelope type %q and event type %s differ", ErrMalformed, env.Type, ev.GetType())
	}
	return ev, nil
}

// StreamConfig returns the JetStream configuration of the event stream:
// file storage, limits retention, and a duplicate window for Nats-Msg-Id.
func (c Config) StreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "jitid credential and task lifecycle events",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
		Duplicates:  DefaultDuplicateWindow,
	}
}

// EnsureStream creates the event stream, or leaves it as it is when it
// exists: whichever service starts first creates it.
func EnsureStream(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	cfg := c.StreamConfig()
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("eventbus: ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
