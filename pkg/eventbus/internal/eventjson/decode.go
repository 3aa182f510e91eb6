package eventjson

import (
	"bytes"
	"math"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Attributes are the envelope's context attributes as read. Each aliases
// the input unless it held escapes; an absent one is nil.
type Attributes struct {
	SpecVersion, ID, Source, Type, Time, Subject, DataContentType []byte
}

// ParseEnvelope reads what AppendEnvelope writes, and returns the
// attributes and the event. Every string of the event is a copy: nothing
// in it holds on to b.
//
// It reads a strict subset of what encoding/json (the envelope) and
// protojson (the data) accept, and reports ok false for anything outside
// it, valid or not: whitespace between tokens, proto field names, members
// it does not know (CloudEvents extensions, fields of a newer proto), null,
// a member given twice, invalid UTF-8, unknown enum names, strings for
// numbers, timestamps with an offset. The caller then hands b to those
// decoders, which decide. Where ok is true, the result is the one they
// would give; FuzzParseEnvelope checks that.
func ParseEnvelope(b []byte) (Attributes, *eventsv1.LifecycleEvent, bool) {
	var attrs Attributes
	// Past this check a byte >= 0x80 is part of a valid sequence, so the
	// scanners below only look for ASCII.
	if !utf8.Valid(b) {
		return attrs, nil, false
	}
	p := parser{b: b}
	var ev *eventsv1.LifecycleEvent
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "specversion":
			p.once(&seen, 0)
			attrs.SpecVersion = p.attr()
		case "id":
			p.once(&seen, 1)
			attrs.ID = p.attr()
		case "source":
			p.once(&seen, 2)
			attrs.Source = p.attr()
		case "type":
			p.once(&seen, 3)
			attrs.Type = p.attr()
		case "time":
			p.once(&seen, 4)
			attrs.Time = p.attr()
		case "subject":
			p.once(&seen, 5)
			attrs.Subject = p.attr()
		case "datacontenttype":
			p.once(&seen, 6)
			attrs.DataContentType = p.attr()
		case "data":
			p.once(&seen, 7)
			ev = p.event()
		default:
			p.bad = true
		}
	}
	if p.bad || p.i != len(b) || ev == nil {
		return Attributes{}, nil, false
	}
	return attrs, ev, true
}

// parser reads b from i. Its methods set bad instead of returning errors,
// and do nothing once it is set; the caller checks bad at the end.
type parser struct {
	b   []byte
	i   int
	bad bool
	// list holds the elements of the array being read, so that each
	// repeated field gets one allocation of the right size.
	list []string
	// esc holds a string being unescaped.
	esc []byte
}

// begin reads the opening byte of an object or array and reports whether
// a member follows.
func (p *parser) begin(open, end byte) bool {
	if p.bad || p.i >= len(p.b) || p.b[p.i] != open {
		p.bad = true
		return false
	}
	p.i++
	if p.i < len(p.b) && p.b[p.i] == end {
		p.i++
		return false
	}
	return true
}

// more reads what follows a member and reports whether another follows.
func (p *parser) more(end byte) bool {
	if p.bad {
		return false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ',':
			p.i++
			return true
		case end:
			p.i++
			return false
		}
	}
	p.bad = true
	return false
}

// once marks member n of an object as read; a second time is left to the
// general decoders (encoding/json keeps the last, protojson refuses).
func (p *parser) once(seen *uint32, n uint) {
	if *seen&(1<<n) != 0 {
		p.bad = true
	}
	*seen |= 1 << n
}

// key reads a member name and the colon after it. The names this parser
// knows are plain ASCII; a name with an escape is left to the general
// decoders (encoding/json would also match one differing in case).
func (p *parser) key() []byte {
	if p.bad || p.i >= len(p.b) || p.b[p.i] != '"' {
		p.bad = true
		return nil
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			p.colon()
			return p.b[start:j]
		case c == '\\' || c < ' ':
			p.bad = true
			return nil
		}
	}
	p.bad = true
	return nil
}

func (p *parser) colon() {
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		p.bad = true
		return
	}
	p.i++
}

// raw reads a string and returns its content: a subslice of b, or, when
// it held escapes, of p.esc, which the next string with escapes reuses.
func (p *parser) raw() (content []byte, escaped bool) {
	if p.bad || p.i >= len(p.b) || p.b[p.i] != '"' {
		p.bad = true
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			return p.b[start:j:j], false
		case c == '\\':
			return p.unescape(start, j), true
		case c < ' ':
			p.bad = true
			return nil, false
		}
	}
	p.bad = true
	return nil, false
}

// attr reads an envelope attribute.
func (p *parser) attr() []byte {
	v, escaped := p.raw()
	if escaped {
		return bytes.Clone(v)
	}
	return v
}

// unescape finishes a string whose first escape is at j.
func (p *parser) unescape(start, j int) []byte {
	out := append(p.esc[:0], p.b[start:j]...)
	for j < len(p.b) {
		c := p.b[j]
		switch {
		case c == '"':
			p.i = j + 1
			p.esc = out
			return out
		case c < ' ':
			p.bad = true
			return nil
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(p.b) {
			p.bad = true
			return nil
		}
		switch p.b[j+1] {
		case '"', '\\', '/':
			out = append(out, p.b[j+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4(j + 2)
			j += 4
			if ok && utf16.IsSurrogate(r) {
				// Only a pair makes a character; encoding/json and
				// protojson treat a lone half differently.
				var lo rune
				if j+3 < len(p.b) && p.b[j+2] == '\\' && p.b[j+3] == 'u' {
					lo, ok = p.hex4(j + 4)
					j += 6
				} else {
					ok = false
				}
				if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
					ok = false
				}
			}
			if !ok {
				p.bad = true
				return nil
			}
			out = utf8.AppendRune(out, r)
		default:
			p.bad = true
			return nil
		}
		j += 2
	}
	p.bad = true
	return nil
}

// hex4 reads the four hex digits at i.
func (p *parser) hex4(i int) (rune, bool) {
	if i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// str reads a string value of the event, as a copy.
func (p *parser) str() string {
	v, _ := p.raw()
	return string(v)
}

func (p *parser) strs() []string {
	if p.list == nil {
		p.list = make([]string, 0, 16)
	}
	p.list = p.list[:0]
	for more := p.begin('[', ']'); more; more = p.more(']') {
		p.list = append(p.list, p.str())
	}
	if p.bad || len(p.list) == 0 {
		return nil
	}
	return append([]string(nil), p.list...)
}

func (p *parser) strMap() map[string]string {
	var m map[string]string
	for more := p.begin('{', '}'); more; more = p.more('}') {
		k := p.str()
		p.colon()
		v := p.str()
		if m == nil {
			m = make(map[string]string)
		}
		if _, dup := m[k]; dup {
			p.bad = true
		}
		m[k] = v
	}
	return m
}

// boolean reads true or false; what follows is checked by more.
func (p *parser) boolean() bool {
	switch rest := p.b[p.i:]; {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false
	}
	p.bad = true
	return false
}

// int32 reads an integer in plain notation: protojson's other spellings
// ("5", 5.0, 5e0, -0) are left to it.
func (p *parser) int32() int32 {
	i := p.i
	neg := i < len(p.b) && p.b[i] == '-'
	if neg {
		i++
	}
	start := i
	for i < len(p.b) && '0' <= p.b[i] && p.b[i] <= '9' {
		i++
	}
	n := p.b[start:i]
	if len(n) == 0 || len(n) > 10 || len(n) > 1 && n[0] == '0' ||
		i < len(p.b) && (p.b[i] == '.' || p.b[i] == 'e' || p.b[i] == 'E') {
		p.bad = true
		return 0
	}
	v, _ := digits(n)
	if neg {
		v = -v
	}
	if neg && v == 0 || v < math.MinInt32 || v > math.MaxInt32 {
		p.bad = true
		return 0
	}
	p.i = i
	return int32(v)
}

// enum reads an enum by name, or by number as protojson writes one this
// build does not know.
func (p *parser) enum(values map[string]int32) int32 {
	if p.i < len(p.b) && p.b[p.i] != '"' {
		return p.int32()
	}
	name, _ := p.raw()
	v, ok := values[string(name)]
	if !ok {
		p.bad = true
	}
	return v
}

func (p *parser) timestamp() *timestamppb.Timestamp {
	v, _ := p.raw()
	ts, ok := parseTimestamp(v)
	if !ok {
		p.bad = true
	}
	return ts
}

func (p *parser) duration() *durationpb.Duration {
	v, _ := p.raw()
	d, ok := parseDuration(v)
	if !ok {
		p.bad = true
	}
	return d
}

// The members of each message, by JSON name: the proto names that protojson
// also accepts are left to it.

func (p *parser) event() *eventsv1.LifecycleEvent {
	ev := &eventsv1.LifecycleEvent{}
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "id":
			p.once(&seen, 1)
			ev.Id = p.str()
		case "type":
			p.once(&seen, 2)
			ev.Type = eventsv1.EventType(p.enum(eventsv1.EventType_value))
		case "time":
			p.once(&seen, 3)
			ev.Time = p.timestamp()
		case "credentialId":
			p.once(&seen, 4)
			ev.CredentialId = p.str()
		case "agent":
			p.once(&seen, 5)
			ev.Agent = p.agent()
		case "delegator":
			p.once(&seen, 6)
			ev.Delegator = p.delegator()
		case "task":
			p.once(&seen, 7)
			ev.Task = p.task()
		case "scopes":
			p.once(&seen, 8)
			ev.Scopes = p.strs()
		case "audience":
			p.once(&seen, 9)
			ev.Audience = p.str()
		case "issueTime":
			p.once(&seen, 10)
			ev.IssueTime = p.timestamp()
		case "expireTime":
			p.once(&seen, 11)
			ev.ExpireTime = p.timestamp()
		case "decision":
			p.once(&seen, 12)
			ev.Decision = p.decision()
		case "reason":
			p.once(&seen, 13)
			ev.Reason = p.str()
		case "issuer":
			p.once(&seen, 14)
			ev.Issuer = p.str()
		case "parentCredentialId":
			p.once(&seen, 15)
			ev.ParentCredentialId = p.str()
		case "credentialIds":
			p.once(&seen, 16)
			ev.CredentialIds = p.strs()
		case "agentChain":
			p.once(&seen, 17)
			ev.AgentChain = p.strs()
		case "requestedScopes":
			p.once(&seen, 18)
			ev.RequestedScopes = p.strs()
		case "requestedTtl":
			p.once(&seen, 19)
			ev.RequestedTtl = p.duration()
		case "caller":
			p.once(&seen, 20)
			ev.Caller = p.str()
		case "owner":
			p.once(&seen, 21)
			ev.Owner = p.str()
		case "assertedBy":
			p.once(&seen, 22)
			ev.AssertedBy = p.str()
		default:
			p.bad = true
		}
	}
	return ev
}

func (p *parser) agent() *identityv1.Agent {
	a := &identityv1.Agent{}
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "id":
			p.once(&seen, 1)
			a.Id = p.str()
		case "class":
			p.once(&seen, 2)
			a.Class = identityv1.AgentClass(p.enum(identityv1.AgentClass_value))
		case "platform":
			p.once(&seen, 3)
			a.Platform = p.str()
		case "attributes":
			p.once(&seen, 4)
			a.Attributes = p.strMap()
		default:
			p.bad = true
		}
	}
	return a
}

func (p *parser) delegator() *identityv1.Delegator {
	d := &identityv1.Delegator{}
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "id":
			p.once(&seen, 1)
			d.Id = p.str()
		case "attributes":
			p.once(&seen, 2)
			d.Attributes = p.strMap()
		case "entitlements":
			p.once(&seen, 3)
			d.Entitlements = p.strs()
		case "timeZone":
			p.once(&seen, 4)
			d.TimeZone = p.str()
		case "authenticateTime":
			p.once(&seen, 5)
			d.AuthenticateTime = p.timestamp()
		default:
			p.bad = true
		}
	}
	return d
}

func (p *parser) task() *identityv1.Task {
	t := &identityv1.Task{}
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "id":
			p.once(&seen, 1)
			t.Id = p.str()
		case "purpose":
			p.once(&seen, 2)
			t.Purpose = p.str()
		case "sensitivity":
			p.once(&seen, 3)
			t.Sensitivity = identityv1.Sensitivity(p.enum(identityv1.Sensitivity_value))
		case "deadlineTime", "deadline_time":
			p.once(&seen, 4)
			t.DeadlineTime = p.timestamp()
		default:
			p.bad = true
		}
	}
	return t
}

func (p *parser) decision() *identityv1.Decision {
	d := &identityv1.Decision{}
	var seen uint32
	for more := p.begin('{', '}'); more; more = p.more('}') {
		switch string(p.key()) {
		case "allow":
			p.once(&seen, 1)
			d.Allow = p.boolean()
		case "grantedScopes":
			p.once(&seen, 2)
			d.GrantedScopes = p.strs()
		case "maxTtl":
			p.once(&seen, 3)
			d.MaxTtl = p.duration()
		case "profile":
			p.once(&seen, 4)
			d.Profile = identityv1.Profile(p.enum(identityv1.Profile_value))
		case "obligations":
			p.once(&seen, 5)
			d.Obligations = p.strs()
		case "reasons":
			p.once(&seen, 6)
			d.Reasons = p.strs()
		case "policies":
			p.once(&seen, 7)
			d.Policies = p.strs()
		case "policyVersion":
			p.once(&seen, 8)
			d.PolicyVersion = p.str()
		case "decisionId":
			p.once(&seen, 9)
			d.DecisionId = p.str()
		case "maxUses":
			p.once(&seen, 10)
			d.MaxUses = p.int32()
		case "delegatorUnproven":
			p.once(&seen, 11)
			d.DelegatorUnproven = p.boolean()
		default:
			p.bad = true
		}
	}
	return d
}

// parseTimestamp reads "YYYY-MM-DDTHH:MM:SS[.F]Z" with 1 to 9 digits of
// fraction: the form protojson writes, and a subset of what it reads.
func parseTimestamp(s []byte) (*timestamppb.Timestamp, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return nil, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return nil, false
	}
	var nanos int
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return nil, false
		}
		f, ok := digits(frac[1:])
		if !ok {
			return nil, false
		}
		nanos = f
		for range 10 - len(frac) {
			nanos *= 10
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC)
	if t.Day() != day { // 31 April, 29 February of a common year
		return nil, false
	}
	return &timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(nanos)}, true
}

// parseDuration reads "[-]S[.F]s" with S in plain notation and 1 to 9
// digits of fraction: the form protojson writes, and a subset of what it
// reads.
func parseDuration(s []byte) (*durationpb.Duration, bool) {
	if len(s) < 2 || s[len(s)-1] != 's' {
		return nil, false
	}
	s = s[:len(s)-1]
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	intPart, frac := s, []byte(nil)
	for i, c := range s {
		if c == '.' {
			intPart, frac = s[:i], s[i+1:]
			if len(frac) == 0 || len(frac) > 9 {
				return nil, false
			}
			break
		}
	}
	// Twelve digits hold the largest Duration protojson accepts.
	if len(intPart) == 0 || len(intPart) > 12 || len(intPart) > 1 && intPart[0] == '0' {
		return nil, false
	}
	secs, ok := digits(intPart)
	if !ok || secs > maxDurationSeconds {
		return nil, false
	}
	var nanos int
	if len(frac) > 0 {
		if nanos, ok = digits(frac); !ok {
			return nil, false
		}
		for range 9 - len(frac) {
			nanos *= 10
		}
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	return &durationpb.Duration{Seconds: int64(secs), Nanos: int32(nanos)}, true
}

// digits reads a non-empty run of decimal digits (at most 12).
func digits(s []byte) (int, bool) {
	if len(s) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}
