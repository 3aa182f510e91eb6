package eventbus_test

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// issuedWithDecision is an issued event as the issuer writes it: with the
// policy decision that allowed it.
func issuedWithDecision() *eventsv1.LifecycleEvent {
	ev := sampleEvent()
	ev.Decision = &identityv1.Decision{
		Allow: true, GrantedScopes: []string{"tickets:read", "tickets:comment"},
		MaxTtl: durationpb.New(15 * time.Minute), Profile: identityv1.Profile_PROFILE_MINIMAL,
		Reasons: []string{"medium-sensitivity"}, Policies: []string{"medium-sensitivity"},
		PolicyVersion: "sha256:4b1d0c1e9a7f", DecisionId: "0193a1b2-0000-7000-8000-0000000000dd",
	}
	return ev
}

// BenchmarkEncode is the envelope of one lifecycle event: the issuer
// encodes two per issuance (issued, and expired for the sweeper).
func BenchmarkEncode(b *testing.B) {
	ev := issuedWithDecision()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eventbus.Encode("", ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is what audit (and any SIEM bridge) does per event.
func BenchmarkDecode(b *testing.B) {
	data, err := eventbus.Encode("", issuedWithDecision())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eventbus.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeProtojson is BenchmarkEncode's envelope written by the
// libraries (protojson data in an encoding/json envelope): what Encode
// would cost without eventjson.
func BenchmarkEncodeProtojson(b *testing.B) {
	ev := issuedWithDecision()
	b.ReportAllocs()
	for b.Loop() {
		protojsonEncode(b, eventbus.DefaultSource, ev, protojson.MarshalOptions{})
	}
}

// BenchmarkDecodeProtojson is BenchmarkDecode through encoding/json and
// protojson: what Decode would cost without eventjson (its path for
// envelopes Encode did not write).
func BenchmarkDecodeProtojson(b *testing.B) {
	data, err := eventbus.Encode("", issuedWithDecision())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var env eventbus.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			b.Fatal(err)
		}
		ev := &eventsv1.LifecycleEvent{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(env.Data, ev); err != nil {
			b.Fatal(err)
		}
	}
}
