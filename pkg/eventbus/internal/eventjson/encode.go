// Package eventjson is the JSON form of the CloudEvents envelope of a
// jitid.events.v1.LifecycleEvent, written and read without protobuf
// reflection: the issuer writes an envelope per issuance, per revoked and
// per expired credential, and audit reads each one. protojson's reflection
// was most of that cost (Encode 26 µs -> 1 µs, Decode 38 µs -> 3 µs; see
// docs/BENCHMARKS.md), which is why this package is written by hand.
//
// The data member is what protojson writes for the event (lowerCamelCase
// names, zero values left out, enums by name, Timestamp and Duration as
// strings), so protojson and any SIEM read it as before. Map entries are
// sorted by key, as protojson sorts them, and the output has no spaces.
// ParseEnvelope reads exactly that form; anything else is for protojson.
//
// Adding a field to LifecycleEvent, or to a message it holds
// (identity.v1 Agent, Delegator, Task, Decision):
//
//  1. encode.go: write it in the method of its message, in field-number
//     order, under its JSON name, only when it is not the zero value
//     (str, strs, strMap, enum, timestamp, duration; a new message type
//     gets a method of its own).
//  2. decode.go: read it in the parser method of its message, under its
//     JSON name, with p.once and the next free bit of seen.
//  3. A field of a type neither side handles yet (int64, bytes, float, a
//     oneof, a new well-known type) needs both sides written as protojson
//     writes and reads it, and a case in the tests' gen.
//  4. go test ./pkg/eventbus/...: TestEveryProtoFieldIsHandled sets every
//     field (recursively, from the descriptors) and fails until steps 1
//     and 2 are done; the random and fuzz tests compare with protojson.
package eventjson

import (
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// The CloudEvents attributes that are the same in every envelope.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"
)

// protojson's ranges: a Timestamp within years 1 to 9999, a Duration
// within ±10000 years, nanos below a second.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
	maxDurationSeconds  = 315576000000
	maxNanos            = 999999999
)

// AppendEnvelope appends the CloudEvents structured JSON envelope of ev to
// dst: specversion, id (the event's), source, type (ceType), time (the
// event's, RFC 3339 in UTC), subject (the credential id, or the task id
// without one), datacontenttype, and the event as data.
//
// Like protojson, it refuses what protojson refuses: a string that is not
// valid UTF-8 (ids and text are checked where they enter jitid, so this
// is a bug upstream, not input to repair), a Timestamp outside years 1 to
// 9999, a Duration beyond ±10000 years or with seconds and nanos of
// different signs. On error it returns dst unchanged.
func AppendEnvelope(dst []byte, source, ceType string, ev *eventsv1.LifecycleEvent) ([]byte, error) {
	var e encoder
	b := append(dst, `{"specversion":"`+SpecVersion+`","id":`...)
	b = e.quote(b, "id", ev.GetId())
	b = append(b, `,"source":`...)
	b = e.quote(b, "source", source)
	b = append(b, `,"type":`...)
	b = e.quote(b, "type", ceType)
	// The envelope's time keeps the form it always had (RFC3339Nano:
	// trailing zeros of the fraction dropped), and the Unix epoch when
	// the event has none.
	b = append(b, `,"time":"`...)
	b = ev.GetTime().AsTime().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	subject := ev.GetCredentialId()
	if subject == "" {
		subject = ev.GetTask().GetId()
	}
	if subject != "" {
		b = append(b, `,"subject":`...)
		b = e.quote(b, "subject", subject)
	}
	b = append(b, `,"datacontenttype":"`+DataContentType+`","data":`...)
	b = e.event(b, ev)
	b = append(b, '}')
	if e.err != nil {
		return dst, e.err
	}
	return b, nil
}

// encoder remembers the first value protojson would refuse, rather than
// returning it from every call; AppendEnvelope checks it once at the end.
// The output is passed in and out, not kept here: the compiler keeps a
// buffer on the stack only when nothing is stored through a pointer.
type encoder struct {
	// msg is the message being written, for errors.
	msg message
	err error
}

// message names a message in errors.
type message int

const (
	msgEnvelope message = iota
	msgLifecycleEvent
	msgAgent
	msgDelegator
	msgTask
	msgDecision
)

var messageNames = [...]string{
	msgEnvelope:       "envelope",
	msgLifecycleEvent: "jitid.events.v1.LifecycleEvent",
	msgAgent:          "jitid.identity.v1.Agent",
	msgDelegator:      "jitid.identity.v1.Delegator",
	msgTask:           "jitid.identity.v1.Task",
	msgDecision:       "jitid.identity.v1.Decision",
}

func (e *encoder) fail(key, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("eventjson: %s.%s: %s", messageNames[e.msg], key, fmt.Sprintf(format, args...))
	}
}

func (e *encoder) event(b []byte, ev *eventsv1.LifecycleEvent) []byte {
	e.msg = msgLifecycleEvent
	b = append(b, '{')
	b = e.str(b, "id", ev.Id)
	b = enum(b, "type", int32(ev.Type), eventsv1.EventType_name)
	b = e.timestamp(b, "time", ev.Time)
	b = e.str(b, "credentialId", ev.CredentialId)
	if ev.Agent != nil {
		b = e.agent(key(b, "agent"), ev.Agent)
	}
	if ev.Delegator != nil {
		b = e.delegator(key(b, "delegator"), ev.Delegator)
	}
	if ev.Task != nil {
		b = e.task(key(b, "task"), ev.Task)
	}
	b = e.strs(b, "scopes", ev.Scopes)
	b = e.str(b, "audience", ev.Audience)
	b = e.timestamp(b, "issueTime", ev.IssueTime)
	b = e.timestamp(b, "expireTime", ev.ExpireTime)
	if ev.Decision != nil {
		b = e.decision(key(b, "decision"), ev.Decision)
	}
	b = e.str(b, "reason", ev.Reason)
	b = e.str(b, "issuer", ev.Issuer)
	b = e.str(b, "parentCredentialId", ev.ParentCredentialId)
	b = e.strs(b, "credentialIds", ev.CredentialIds)
	b = e.strs(b, "agentChain", ev.AgentChain)
	b = e.strs(b, "requestedScopes", ev.RequestedScopes)
	b = e.duration(b, "requestedTtl", ev.RequestedTtl)
	b = e.str(b, "caller", ev.Caller)
	b = e.str(b, "owner", ev.Owner)
	b = e.str(b, "assertedBy", ev.AssertedBy)
	return append(b, '}')
}

func (e *encoder) agent(b []byte, a *identityv1.Agent) []byte {
	e.msg = msgAgent
	b = append(b, '{')
	b = e.str(b, "id", a.Id)
	b = enum(b, "class", int32(a.Class), identityv1.AgentClass_name)
	b = e.str(b, "platform", a.Platform)
	b = e.strMap(b, "attributes", a.Attributes)
	e.msg = msgLifecycleEvent
	return append(b, '}')
}

func (e *encoder) delegator(b []byte, d *identityv1.Delegator) []byte {
	e.msg = msgDelegator
	b = append(b, '{')
	b = e.str(b, "id", d.Id)
	b = e.strMap(b, "attributes", d.Attributes)
	b = e.strs(b, "entitlements", d.Entitlements)
	b = e.str(b, "timeZone", d.TimeZone)
	b = e.timestamp(b, "authenticateTime", d.AuthenticateTime)
	e.msg = msgLifecycleEvent
	return append(b, '}')
}

func (e *encoder) task(b []byte, t *identityv1.Task) []byte {
	e.msg = msgTask
	b = append(b, '{')
	b = e.str(b, "id", t.Id)
	b = e.str(b, "purpose", t.Purpose)
	b = enum(b, "sensitivity", int32(t.Sensitivity), identityv1.Sensitivity_name)
	b = e.timestamp(b, "deadlineTime", t.DeadlineTime)
	e.msg = msgLifecycleEvent
	return append(b, '}')
}

func (e *encoder) decision(b []byte, d *identityv1.Decision) []byte {
	e.msg = msgDecision
	b = append(b, '{')
	if d.Allow {
		b = append(key(b, "allow"), "true"...)
	}
	b = e.strs(b, "grantedScopes", d.GrantedScopes)
	b = e.duration(b, "maxTtl", d.MaxTtl)
	b = enum(b, "profile", int32(d.Profile), identityv1.Profile_name)
	b = e.strs(b, "obligations", d.Obligations)
	b = e.strs(b, "reasons", d.Reasons)
	b = e.strs(b, "policies", d.Policies)
	b = e.str(b, "policyVersion", d.PolicyVersion)
	b = e.str(b, "decisionId", d.DecisionId)
	if d.MaxUses != 0 {
		b = strconv.AppendInt(key(b, "maxUses"), int64(d.MaxUses), 10)
	}
	if d.DelegatorUnproven {
		b = append(key(b, "delegatorUnproven"), "true"...)
	}
	e.msg = msgLifecycleEvent
	return append(b, '}')
}

// key writes a member name, after a comma unless it is the first member.
func key(b []byte, k string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func (e *encoder) str(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	return e.quote(key(b, k), k, v)
}

func (e *encoder) strs(b []byte, k string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(key(b, k), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.quote(b, k, v)
	}
	return append(b, ']')
}

// maxStackKeys is how many map keys are sorted without an allocation.
const maxStackKeys = 16

func (e *encoder) strMap(b []byte, k string, m map[string]string) []byte {
	if len(m) == 0 {
		return b
	}
	var arr [maxStackKeys]string
	keys := arr[:0]
	for mk := range m {
		keys = append(keys, mk)
	}
	slices.Sort(keys)
	b = append(key(b, k), '{')
	for i, mk := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.quote(b, k, mk)
		b = append(b, ':')
		b = e.quote(b, k, m[mk])
	}
	return append(b, '}')
}

// enum writes the value's name, or its number when the proto this was
// built with does not know it (a newer sender), as protojson does.
func enum(b []byte, k string, v int32, names map[int32]string) []byte {
	if v == 0 {
		return b
	}
	b = key(b, k)
	if name, ok := names[v]; ok {
		b = append(b, '"')
		b = append(b, name...)
		return append(b, '"')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

func (e *encoder) timestamp(b []byte, k string, ts *timestamppb.Timestamp) []byte {
	if ts == nil {
		return b
	}
	secs, nanos := ts.Seconds, ts.Nanos
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		e.fail(k, "seconds out of range %d", secs)
		return b
	}
	if nanos < 0 || nanos > maxNanos {
		e.fail(k, "nanos out of range %d", nanos)
		return b
	}
	t := time.Unix(secs, int64(nanos)).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = append(key(b, k), '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = appendFraction(b, nanos)
	return append(b, 'Z', '"')
}

func (e *encoder) duration(b []byte, k string, d *durationpb.Duration) []byte {
	if d == nil {
		return b
	}
	secs, nanos := d.Seconds, d.Nanos
	if secs < -maxDurationSeconds || secs > maxDurationSeconds {
		e.fail(k, "seconds out of range %d", secs)
		return b
	}
	if nanos < -maxNanos || nanos > maxNanos {
		e.fail(k, "nanos out of range %d", nanos)
		return b
	}
	if (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		e.fail(k, "signs of seconds and nanos do not match")
		return b
	}
	b = append(key(b, k), '"')
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = appendFraction(b, nanos)
	return append(b, 's', '"')
}

// appendFraction writes nanos (0 to 999999999) as protojson does: nothing
// for whole seconds, else a dot and 3, 6 or 9 digits.
func appendFraction(b []byte, nanos int32) []byte {
	switch {
	case nanos == 0:
		return b
	case nanos%1e6 == 0:
		return appendDigits(append(b, '.'), int(nanos/1e6), 3)
	case nanos%1e3 == 0:
		return appendDigits(append(b, '.'), int(nanos/1e3), 6)
	default:
		return appendDigits(append(b, '.'), int(nanos), 9)
	}
}

// appendDigits writes v (not negative) in exactly width decimal digits.
func appendDigits(b []byte, v, width int) []byte {
	var buf [9]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:width]...)
}

// needsEscape marks the ASCII bytes a JSON string cannot hold as they are.
// Unlike encoding/json, and like protojson, <, > and & stay as they are.
var needsEscape = func() (t [utf8.RuneSelf]bool) {
	for c := range byte(' ') {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

const hexDigits = "0123456789abcdef"

// quote writes s, the value of member k, as a JSON string, escaped as
// protojson escapes it.
func (e *encoder) quote(b []byte, k, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !needsEscape[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			e.fail(k, "invalid UTF-8")
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
