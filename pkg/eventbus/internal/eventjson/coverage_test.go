package eventjson_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jitid/jitid/pkg/eventbus/internal/eventjson"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// TestEveryProtoFieldIsHandled sets every field of LifecycleEvent and of
// every message under it, walking the descriptors, to a value that is not
// the zero value, and requires AppendEnvelope to write what protojson
// writes and ParseEnvelope to read it back. A field added to the proto
// and not to the encoder or the decoder fails it (see the package doc's
// checklist).
func TestEveryProtoFieldIsHandled(t *testing.T) {
	t.Parallel()
	ev := &eventsv1.LifecycleEvent{}
	setEveryField(t, ev.ProtoReflect())

	want, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	b, err := eventjson.AppendEnvelope(nil, "urn:jitid:issuer", "dev.jitid.credential.issued.v1", ev)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env.Data, compact.Bytes()) {
		written := &eventsv1.LifecycleEvent{}
		if err := protojson.Unmarshal(env.Data, written); err != nil {
			t.Fatalf("AppendEnvelope wrote data protojson cannot read: %v\n%s", err, env.Data)
		}
		t.Errorf("AppendEnvelope does not write every field as protojson does (-want +written):\n%s\n got: %s\nwant: %s",
			cmp.Diff(ev, written, protocmp.Transform()), env.Data, compact.Bytes())
	}

	_, parsed, ok := eventjson.ParseEnvelope(b)
	if !ok {
		t.Fatalf("ParseEnvelope does not read an event with every field set (a field it does not know?):\n%s", b)
	}
	if !proto.Equal(ev, parsed) {
		t.Errorf("ParseEnvelope does not read every field (-want +parsed):\n%s", cmp.Diff(ev, parsed, protocmp.Transform()))
	}
}

// setEveryField sets every field of m, recursively, to a value other than
// its zero value: two entries in lists and maps.
func setEveryField(t *testing.T, m protoreflect.Message) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for _, k := range []string{"k1", "k2"} {
				mp.Set(protoreflect.ValueOfString(k).MapKey(), nonZero(t, fd.MapValue(), k))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for _, s := range []string{"1", "2"} {
				l.Append(nonZero(t, fd, s))
			}
		case fd.Message() != nil:
			switch name := fd.Message().FullName(); name {
			case "google.protobuf.Timestamp", "google.protobuf.Duration":
				sub := m.Mutable(fd).Message()
				sub.Set(sub.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(1795860000+int64(fd.Number())))
				sub.Set(sub.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(5e8))
			default:
				if name.Parent() == "google.protobuf" {
					t.Fatalf("%s: no value for %s; teach eventjson and this test about it", fd.FullName(), name)
				}
				setEveryField(t, m.Mutable(fd).Message())
			}
		default:
			m.Set(fd, nonZero(t, fd, ""))
		}
		if !m.Has(fd) {
			t.Fatalf("%s is still unset", fd.FullName())
		}
	}
}

// nonZero is a value of fd's scalar kind that protojson writes: the
// field's own name in strings, so that a field written under another's
// name shows.
func nonZero(t *testing.T, fd protoreflect.FieldDescriptor, suffix string) protoreflect.Value {
	t.Helper()
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(fd.Name()) + suffix)
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(fd.Number()) + 100)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(values.Len() - 1).Number())
	default:
		t.Fatalf("%s: no value for kind %s; teach eventjson and this test about it", fd.FullName(), fd.Kind())
		return protoreflect.Value{}
	}
}
