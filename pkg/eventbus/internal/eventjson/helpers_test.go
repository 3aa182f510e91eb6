package eventjson_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jitid/jitid/pkg/eventbus/internal/eventjson"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// envelope is the envelope as encoding/json reads it: how eventbus's
// general decoder and a SIEM read it.
type envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// protojsonEnvelope is the envelope written by the libraries: protojson
// data inside encoding/json.
func protojsonEnvelope(source, ceType string, ev *eventsv1.LifecycleEvent, opts protojson.MarshalOptions) ([]byte, error) {
	data, err := opts.Marshal(ev)
	if err != nil {
		return nil, err
	}
	subject := ev.GetCredentialId()
	if subject == "" {
		subject = ev.GetTask().GetId()
	}
	return json.Marshal(envelope{
		SpecVersion: "1.0", ID: ev.GetId(), Source: source, Type: ceType,
		Time:    ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano),
		Subject: subject, DataContentType: "application/json", Data: data,
	})
}

// referenceDecode reads an envelope the way the general decoders do.
func referenceDecode(b []byte) (envelope, *eventsv1.LifecycleEvent, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return env, nil, err
	}
	ev := &eventsv1.LifecycleEvent{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(env.Data, ev); err != nil {
		return env, nil, err
	}
	return env, ev, nil
}

// attrsOf turns parsed attributes into the strings encoding/json gives.
func attrsOf(a eventjson.Attributes) envelope {
	return envelope{
		SpecVersion: string(a.SpecVersion), ID: string(a.ID), Source: string(a.Source),
		Type: string(a.Type), Time: string(a.Time), Subject: string(a.Subject),
		DataContentType: string(a.DataContentType),
	}
}

// checkEncoding writes ev with AppendEnvelope and checks the result
// against protojson and encoding/json: refused when protojson refuses,
// else the data byte for byte what protojson writes (less its spaces), an
// envelope with the right attributes, and read back the same by protojson
// and by ParseEnvelope.
func checkEncoding(t *testing.T, source, ceType string, ev *eventsv1.LifecycleEvent) {
	t.Helper()
	prefix := []byte("prefix")
	got, err := eventjson.AppendEnvelope(prefix, source, ceType, ev)
	want, wantErr := protojson.Marshal(ev)
	if wantErr == nil && (!utf8.ValidString(source) || !utf8.ValidString(ceType)) {
		wantErr = errInvalidEnvelope
	}
	if wantErr != nil {
		if err == nil {
			t.Fatalf("AppendEnvelope(%v) succeeded, protojson says %v", ev, wantErr)
		}
		if string(got) != "prefix" {
			t.Errorf("AppendEnvelope() on error = %q, want dst unchanged", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("AppendEnvelope(%v): %v", ev, err)
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendEnvelope() = %q, want it appended to dst", got)
	}
	got = got[len(prefix):]
	if !json.Valid(got) {
		t.Fatalf("AppendEnvelope() is not JSON: %q", got)
	}
	var env envelope
	if err := json.Unmarshal(got, &env); err != nil {
		t.Fatal(err)
	}
	subject := ev.GetCredentialId()
	if subject == "" {
		subject = ev.GetTask().GetId()
	}
	wantEnv := envelope{
		SpecVersion: "1.0", ID: ev.GetId(), Source: source, Type: ceType,
		Time:    ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano),
		Subject: subject, DataContentType: "application/json",
	}
	data := env.Data
	env.Data = nil
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("envelope attributes (-want +got):\n%s", diff)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, compact.Bytes()) {
		t.Errorf("data differs from protojson's\n got: %s\nwant: %s", data, compact.Bytes())
	}
	back := &eventsv1.LifecycleEvent{}
	if err := protojson.Unmarshal(data, back); err != nil {
		t.Fatalf("protojson cannot read the data: %v\n%s", err, data)
	}
	if diff := cmp.Diff(ev, back, protocmp.Transform()); diff != "" {
		t.Errorf("protojson reads back (-want +got):\n%s", diff)
	}

	attrs, parsed, ok := eventjson.ParseEnvelope(got)
	if !ok {
		t.Fatalf("ParseEnvelope(AppendEnvelope) not ok:\n%s", got)
	}
	if diff := cmp.Diff(wantEnv, attrsOf(attrs)); diff != "" {
		t.Errorf("ParseEnvelope(AppendEnvelope) attributes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ev, parsed, protocmp.Transform()); diff != "" {
		t.Errorf("ParseEnvelope(AppendEnvelope) event (-want +got):\n%s", diff)
	}
}

var errInvalidEnvelope = errorString("invalid UTF-8 in an envelope attribute")

type errorString string

func (e errorString) Error() string { return string(e) }

// spacedEnvelope is an envelope as another writer might make it: spaces
// and newlines everywhere, proto field names, members in another order.
func spacedEnvelope(source, ceType string, ev *eventsv1.LifecycleEvent) ([]byte, error) {
	data, err := protojson.MarshalOptions{Multiline: true, Indent: "\t", UseProtoNames: true}.Marshal(ev)
	if err != nil {
		return nil, err
	}
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	subject := ev.GetCredentialId()
	if subject == "" {
		subject = ev.GetTask().GetId()
	}
	var b strings.Builder
	b.WriteString(" \r\n{ \"data\" :\n")
	b.Write(data)
	b.WriteString(" ,\n\t\"specversion\": \"1.0\" , \"type\" : " + q(ceType) + ", \"id\":" + q(ev.GetId()) +
		",\"time\" :" + q(ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano)) +
		",\"source\":" + q(source) + ",\n\"datacontenttype\":\"application/json\"")
	if subject != "" {
		b.WriteString(",\"subject\": " + q(subject))
	}
	b.WriteString("}\n\t")
	return []byte(b.String()), nil
}

// gen makes random events: every field of every message set or left
// out at random, so that a field added to the proto, which eventjson
// does not know yet, fails the tests.
type gen struct {
	r *rand.Rand
	// invalid allows what protojson refuses: strings that are not UTF-8,
	// timestamps and durations out of range.
	invalid bool
}

func (g gen) event() *eventsv1.LifecycleEvent {
	ev := &eventsv1.LifecycleEvent{}
	g.fill(ev.ProtoReflect())
	return ev
}

func (g gen) fill(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if g.r.IntN(5) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range g.r.IntN(4) {
				mp.Set(protoreflect.ValueOfString(g.string()).MapKey(), g.scalar(fd.MapValue()))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range g.r.IntN(4) {
				l.Append(g.scalar(fd))
			}
		case fd.Message() != nil:
			switch name := fd.Message().FullName(); name {
			case "google.protobuf.Timestamp":
				secs, nanos := g.timestamp()
				g.setSecondsNanos(m.Mutable(fd).Message(), secs, nanos)
			case "google.protobuf.Duration":
				secs, nanos := g.duration()
				g.setSecondsNanos(m.Mutable(fd).Message(), secs, nanos)
			default:
				if !strings.HasPrefix(string(name), "jitid.") {
					panic("gen: no generator for " + name + "; teach eventjson and gen about it")
				}
				g.fill(m.Mutable(fd).Message())
			}
		default:
			m.Set(fd, g.scalar(fd))
		}
	}
}

func (g gen) setSecondsNanos(m protoreflect.Message, secs int64, nanos int32) {
	fds := m.Descriptor().Fields()
	m.Set(fds.ByName("seconds"), protoreflect.ValueOfInt64(secs))
	m.Set(fds.ByName("nanos"), protoreflect.ValueOfInt32(nanos))
}

func (g gen) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(g.string())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(g.r.IntN(2) == 0)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(g.pick32(0, 1, -1, 15, math.MaxInt32, math.MinInt32, g.r.Int32()))
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if g.r.IntN(10) == 0 {
			// A value of a newer proto.
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(g.pick32(int32(values.Len()), 99, -3)))
		}
		return protoreflect.ValueOfEnum(values.Get(g.r.IntN(values.Len())).Number())
	default:
		panic("gen: no generator for " + fd.Kind().String() + " " + string(fd.FullName()) + "; teach eventjson and gen about it")
	}
}

func (g gen) pick32(vs ...int32) int32 { return vs[g.r.IntN(len(vs))] }

func (g gen) pick64(vs ...int64) int64 { return vs[g.r.IntN(len(vs))] }

// nanos is a fraction of a second in each of protojson's spellings (0,
// 3, 6 and 9 digits).
func (g gen) nanos() int32 {
	return g.pick32(0, 1, 999999999, 500000000, g.r.Int32N(1000)*1e6, g.r.Int32N(1e6)*1e3, g.r.Int32N(1e9))
}

func (g gen) timestamp() (int64, int32) {
	const minSecs, maxSecs = -62135596800, 253402300799
	secs := g.pick64(0, minSecs, maxSecs, 1795860000, -1, g.r.Int64N(maxSecs-minSecs+1)+minSecs)
	nanos := g.nanos()
	if g.invalid && g.r.IntN(20) == 0 {
		switch g.r.IntN(3) {
		case 0:
			secs = g.pick64(minSecs-1, maxSecs+1, math.MaxInt64)
		case 1:
			nanos = g.pick32(-1, 1e9, math.MinInt32)
		case 2:
			secs, nanos = maxSecs, 1e9
		}
	}
	return secs, nanos
}

func (g gen) duration() (int64, int32) {
	const maxSecs = 315576000000
	secs, nanos := g.pick64(0, 1, 900, maxSecs, g.r.Int64N(maxSecs+1)), g.nanos()
	if g.r.IntN(3) == 0 {
		secs, nanos = -secs, -nanos
	}
	if g.invalid && g.r.IntN(20) == 0 {
		switch g.r.IntN(3) {
		case 0:
			secs = g.pick64(maxSecs+1, -maxSecs-1, math.MinInt64)
		case 1:
			nanos = g.pick32(1e9, -1e9, math.MaxInt32)
		case 2:
			secs, nanos = 5, -5
		}
	}
	return secs, nanos
}

// runes are the characters strings are made of: what JSON must escape,
// what encoding/json escapes and protojson does not, and every UTF-8
// length.
var runes = []rune{
	'a', 'Z', '0', ' ', '-', ':', '/', '@', '.', '_',
	'"', '\\', '\b', '\f', '\n', '\r', '\t', 0, 0x01, 0x1f, 0x7f,
	'<', '>', '&', '\'', 'é', 'ß', 0x80, 0x7ff, '€', '\u2028', '\u2029', '\ufeff', '\ufffd', 0xffff,
	'日', '😀', 0x10000, 0x10ffff,
}

func (g gen) string() string {
	if g.r.IntN(4) == 0 {
		return ""
	}
	var b []byte
	for range g.r.IntN(12) + 1 {
		if g.r.IntN(3) == 0 {
			b = append(b, byte('a'+g.r.IntN(26)))
			continue
		}
		b = utf8.AppendRune(b, runes[g.r.IntN(len(runes))])
	}
	if g.invalid && g.r.IntN(40) == 0 {
		bad := [][]byte{{0xff}, {0xc3}, {0xe2, 0x82}, {0xed, 0xa0, 0x80}, {0xc0, 0xaf}}
		at := g.r.IntN(len(b) + 1)
		b = append(b[:at], append(bad[g.r.IntN(len(bad))], b[at:]...)...)
	}
	return string(b)
}

// checkParse checks ParseEnvelope against the general decoders: where it
// reads b, they read the same from it.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	attrs, ev, ok := eventjson.ParseEnvelope(b)
	if !ok {
		return
	}
	env, want, err := referenceDecode(b)
	if err != nil {
		t.Fatalf("ParseEnvelope(%q) = %v; the general decoders refuse it: %v", b, ev, err)
	}
	env.Data = nil
	if diff := cmp.Diff(env, attrsOf(attrs)); diff != "" {
		t.Errorf("ParseEnvelope(%q) attributes (-general +fast):\n%s", b, diff)
	}
	if !proto.Equal(want, ev) {
		t.Errorf("ParseEnvelope(%q) event (-general +fast):\n%s", b, cmp.Diff(want, ev, protocmp.Transform()))
	}
}
