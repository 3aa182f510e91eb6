package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/google/go-cmp/cmp"
)

// TestScopeAndFieldReads covers the static reads the plan relies on,
// including uses of the whole context that the schema validator rejects
// today (so no compiled set can show them) but a future schema might not.
func TestScopeAndFieldReads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		src             string
		action, scope   bool
		wholeContext    bool
		named, notNamed []field
	}{
		{name: "nothing", src: `permit (principal, action, resource);`},
		{name: "attributes", src: `permit (principal, action, resource) when { resource.sensitivity_level <= 2 && principal has class };`,
			named: []field{fSensitivityLevel, fClass}, notNamed: []field{fSensitivity, fPlatform, fID}},
		{name: "context keys", src: `permit (principal, action, resource) when { context has local && context.local.hour > 8 && context["ttl"] < duration("1h") };`,
			named: []field{fLocal, fHour, fTTL}, notNamed: []field{fTTLSeconds, fTime}},
		{name: "scope", src: `permit (principal, action, resource) when { context.scope like "a:*" };`, scope: true},
		{name: "has scope", src: `permit (principal, action, resource) when { context has scope };`, scope: true},
		{name: "action in condition", src: `permit (principal, action, resource) when { action == Jitid::Action::"x" };`, action: true},
		{name: "action head only", src: `permit (principal, action == Jitid::Action::"x", resource);`},
		{name: "whole context", src: `permit (principal, action, resource) when { context == {"ttl": duration("1h")} };`, scope: true, wholeContext: true},
		{name: "context in a set", src: `permit (principal, action, resource) when { [context].contains(context) };`, scope: true, wholeContext: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := cedar.NewPolicyListFromBytes("t.cedar", []byte(tt.src))
			if err != nil || len(list) != 1 {
				t.Fatalf("parse: %v", err)
			}
			p := (*xast.Policy)(list[0].AST())
			action, scope := scopeReads(p)
			if action != tt.action || scope != tt.scope {
				t.Errorf("scopeReads = action %v, scope %v; want %v, %v", action, scope, tt.action, tt.scope)
			}
			var f fields
			f.addPolicy(p)
			if f.wholeContext != tt.wholeContext {
				t.Errorf("wholeContext = %v, want %v", f.wholeContext, tt.wholeContext)
			}
			for _, x := range tt.named {
				if !f.attr(x) || !f.ctx(x) {
					t.Errorf("field %d not kept", x)
				}
			}
			for _, x := range tt.notNamed {
				if f.attr(x) {
					t.Errorf("field %d kept, named nowhere", x)
				}
			}
		})
	}
	var none *fields
	if !none.attr(fID) || !none.ctx(fLocal) {
		t.Error("nil fields must keep everything")
	}
}

// TestSchemaMatchesRequest keeps three lists in step: the attributes and
// context keys the built-in schema declares, the ones evaluation fills
// (for a request with every optional part), and the field names the plan
// prunes by. A name missing from fieldByName would let the plan drop a
// field a policy reads.
func TestSchemaMatchesRequest(t *testing.T) {
	t.Parallel()
	sch, err := builtin()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	req := &Request{
		Agent:     Agent{ID: "a", Class: AgentClassEphemeral, Platform: "p", Attributes: map[string]string{"k": "v"}},
		Delegator: Delegator{ID: "d", Attributes: map[string]string{"k": "v"}, Entitlements: []string{"x"}, TimeZone: "Europe/Paris", AuthenticatedAt: now.Add(-time.Minute)},
		Task:      Task{ID: "t", Purpose: "p", Sensitivity: SensitivityLow, Deadline: now.Add(time.Hour)},
		Scopes:    []string{"x"},
		TTL:       time.Hour,
	}
	b := recordBufs.Get().(*recordBuf)
	defer b.release()
	em, principal, resource := entities(b, nil, req)
	keys := func(r cedar.Record) []string {
		var ks []string
		for k := range r.Keys() {
			ks = append(ks, string(k))
		}
		slices.Sort(ks)
		return ks
	}
	declared := func(r resolved.RecordType) []string {
		var ks []string
		for k := range r {
			ks = append(ks, string(k))
		}
		slices.Sort(ks)
		return ks
	}
	delegator := cedar.NewEntityUID(DelegatorType, "d")
	for _, c := range []struct {
		typ cedar.EntityType
		uid cedar.EntityUID
	}{{AgentType, principal}, {DelegatorType, delegator}, {TaskType, resource}} {
		want := declared(sch.Entities[c.typ].Shape)
		if diff := cmp.Diff(want, keys(em[c.uid].Attributes)); diff != "" {
			t.Errorf("%s attributes (-schema +filled):\n%s", c.typ, diff)
		}
		for _, k := range want {
			if _, ok := fieldByName[k]; !ok {
				t.Errorf("%s attribute %q is not in fieldByName", c.typ, k)
			}
		}
	}
	ctx := baseContext(b, nil, req, now)
	ctx["scope"] = cedar.String("x")
	want := declared(sch.Actions[cedar.NewEntityUID(ActionType, anyAction)].AppliesTo.Context)
	if diff := cmp.Diff(want, keys(cedar.NewRecord(ctx))); diff != "" {
		t.Errorf("context (-schema +filled):\n%s", diff)
	}
	for _, k := range want {
		if _, ok := fieldByName[k]; !ok && k != "scope" {
			t.Errorf("context key %q is not in fieldByName", k)
		}
	}
}

func TestScopeGuardPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		when    string
		guarded bool
		prefix  string
		admits  []string
		rejects []string
	}{
		{`context.scope like "team1:*"`, true, "team1:", []string{"team1:", "team1:x"}, []string{"team10:x", "team", "x"}},
		{`context.scope like "a\*b*" && context.hour > 1`, true, "a*b", []string{"a*b", "a*bc"}, []string{"ab", "a*"}},
		{`context.scope like "*:read"`, true, "", []string{"x:read", ":read"}, []string{"x:write"}},
		{`context.scope like "exact"`, true, "exact", []string{"exact"}, []string{"exact2", "exac"}},
		{`"k:1" == context.scope`, true, "k:1", []string{"k:1"}, []string{"k:12", "k:"}},
		{`context.hour > 1 && context.scope like "x*"`, false, "", nil, nil},
		{`context.scope like "x*" || context.hour > 1`, false, "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			t.Parallel()
			list, err := cedar.NewPolicyListFromBytes("t.cedar", []byte(`permit (principal, action, resource) when { `+tt.when+` };`))
			if err != nil || len(list) != 1 {
				t.Fatalf("parse: %v", err)
			}
			guard, prefix := scopeGuard((*xast.Policy)(list[0].AST()))
			if (guard != nil) != tt.guarded || prefix != tt.prefix {
				t.Fatalf("scopeGuard = guarded %v, prefix %q; want %v, %q", guard != nil, prefix, tt.guarded, tt.prefix)
			}
			for _, s := range tt.admits {
				if !guard(cedar.String(s)) || !strings.HasPrefix(s, prefix) {
					t.Errorf("%q not admitted, or lacks the prefix", s)
				}
			}
			for _, s := range tt.rejects {
				if guard(cedar.String(s)) {
					t.Errorf("%q admitted", s)
				}
			}
		})
	}
}
