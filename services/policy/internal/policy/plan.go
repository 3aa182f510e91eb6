package policy

import (
	"encoding/json"
	"iter"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// plan sorts a set's policies by what they read of the scope, so that each
// is evaluated only as often as its answer can change. Built once per load.
//
// Cedar's answer for one scope is a function of the policies that hold and
// those that fail. A policy that reads neither `action` nor context.scope
// gives the same answer for every scope of a request, so it runs once per
// request. A policy whose head names actions (`action == A`, `action in A`,
// `action in [A, B]`) is false, without an error, for any other action: jitid
// sends no action entities, so `in` is equality, and Cedar's head is
// `principal && action && resource && conditions` with short-circuit, so the
// conditions are not reached. It runs only for the scopes it names.
// TestPlanMatchesFullEvaluation checks the result against one Cedar call per
// scope over the whole set.
type plan struct {
	// once read neither the action nor context.scope.
	once policyList
	// anyAction have an unconstrained head but read the action or
	// context.scope: every scope runs them.
	anyAction policyList
	// anyActionReadsScope: some of anyAction read context.scope, so each
	// scope needs its own context record.
	anyActionReadsScope bool
	// guards indexes anyAction by the prefix of their scope guards; nil
	// when none has one.
	guards *guardIndex
	// byAction holds the policies whose head names the action.
	byAction map[cedar.EntityUID]*actionPolicies
	// fields are the entity attributes and context keys the set can see.
	fields fields
}

type actionPolicies struct {
	list       policyList
	readsScope bool
}

type policyRef struct {
	id     cedar.PolicyID
	policy *cedar.Policy
	// guard, when set, is a test on the scope that the policy's first
	// condition starts with; see scopeGuard. Every scope it admits starts
	// with prefix.
	guard  func(cedar.String) bool
	prefix string
}

// admits reports whether the policy can hold, or fail, for scope.
func (r *policyRef) admits(scope cedar.String) bool { return r.guard == nil || r.guard(scope) }

// policyList is a cedar.PolicyIterator over a slice, in file order.
type policyList []policyRef

// All yields the policies in order.
func (l *policyList) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, r := range *l {
			if !yield(r.id, r.policy) {
				return
			}
		}
	}
}

// newPlan sorts the policies of ids (in file order).
func newPlan(ids []string, meta map[cedar.PolicyID]*policyMeta) *plan {
	pl := &plan{byAction: map[cedar.EntityUID]*actionPolicies{}}
	for _, id := range ids {
		m := meta[cedar.PolicyID(id)]
		ref := policyRef{id: cedar.PolicyID(id), policy: m.policy}
		a := (*xast.Policy)(m.policy.AST())
		pl.fields.addPolicy(a)
		readsAction, readsScope := scopeReads(a)
		var named []cedar.EntityUID
		switch h := a.Action.(type) {
		case xast.ScopeTypeAll:
			switch {
			case readsAction || readsScope:
				ref.guard, ref.prefix = scopeGuard(a)
				pl.anyAction = append(pl.anyAction, ref)
				pl.anyActionReadsScope = pl.anyActionReadsScope || readsScope
			default:
				pl.once = append(pl.once, ref)
			}
			continue
		case xast.ScopeTypeEq:
			named = []cedar.EntityUID{h.Entity}
		case xast.ScopeTypeIn:
			named = []cedar.EntityUID{h.Entity}
		case xast.ScopeTypeInSet:
			named = h.Entities
		default:
			// Not in Cedar's grammar for actions today; run it for every
			// scope rather than guess.
			pl.anyAction = append(pl.anyAction, ref)
			pl.anyActionReadsScope = true
			continue
		}
		for _, uid := range named {
			ap := pl.byAction[uid]
			if ap == nil {
				ap = &actionPolicies{}
				pl.byAction[uid] = ap
			}
			// `action in [A, A]` must not run the policy twice.
			if n := len(ap.list); n > 0 && ap.list[n-1].id == ref.id {
				continue
			}
			ap.list = append(ap.list, ref)
			ap.readsScope = ap.readsScope || readsScope
		}
	}
	pl.guards = newGuardIndex(pl.anyAction)
	return pl
}

// guardIndex finds the policies of a list whose scope guard may admit a
// scope without running every guard: a guard admits only scopes that
// start with its prefix.
type guardIndex struct {
	lengths  []int            // the distinct prefix lengths, ascending
	byPrefix map[string][]int // prefix → positions in the list
	always   []int            // no guard, or an empty prefix
}

func newGuardIndex(list policyList) *guardIndex {
	ix := &guardIndex{byPrefix: map[string][]int{}}
	guarded := false
	for i, r := range list {
		guarded = guarded || r.guard != nil
		if r.guard == nil || r.prefix == "" {
			ix.always = append(ix.always, i)
			continue
		}
		if _, ok := ix.byPrefix[r.prefix]; !ok {
			ix.lengths = append(ix.lengths, len(r.prefix))
		}
		ix.byPrefix[r.prefix] = append(ix.byPrefix[r.prefix], i)
	}
	if !guarded {
		return nil
	}
	slices.Sort(ix.lengths)
	ix.lengths = slices.Compact(ix.lengths)
	return ix
}

// candidates appends to dst, in list order, the positions of the policies
// that may admit scope; their guards still have to be run.
func (ix *guardIndex) candidates(dst []int, scope string) []int {
	dst = append(dst, ix.always...)
	for _, n := range ix.lengths {
		if n > len(scope) {
			break
		}
		dst = append(dst, ix.byPrefix[scope[:n]]...)
	}
	slices.Sort(dst)
	return dst
}

// scopeReads says whether the conditions of p read the `action` variable,
// and whether they read context.scope. Any use of `context` other than
// `context.k` or `context has k` with k != "scope" (comparing or passing
// the whole record) counts as reading the scope.
func scopeReads(p *xast.Policy) (action, scope bool) {
	visit := func(n xast.IsNode) bool {
		switch n := n.(type) {
		case xast.NodeTypeAccess:
			if isContext(n.Arg) {
				scope = scope || n.Value == "scope"
				return false
			}
		case xast.NodeTypeHas:
			if isContext(n.Arg) {
				scope = scope || n.Value == "scope"
				return false
			}
		case xast.NodeTypeVariable:
			switch n.Name {
			case "action":
				action = true
			case "context":
				scope = true
			}
		}
		return true
	}
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), visit)
	}
	return action, scope
}

// scopeGuard returns the test on the scope that p's first condition starts
// with, `when { context.scope like "p*" && ... }` or `when {
// context.scope == "s" && ... }`, or nil. Cedar evaluates a policy as
// `principal && action && resource && first condition && ...`, left to
// right with short-circuit, and neither the head nor the test can fail
// (jitid always sends the scope as a string): for a scope the test rejects
// the policy is false without an error, the same as not running it.
func scopeGuard(p *xast.Policy) (guard func(cedar.String) bool, prefix string) {
	if len(p.Conditions) == 0 || p.Conditions[0].Condition != xast.ConditionWhen {
		return nil, ""
	}
	n := p.Conditions[0].Body
	for {
		and, ok := n.(xast.NodeTypeAnd)
		if !ok {
			break
		}
		n = and.Left
	}
	switch n := n.(type) {
	case xast.NodeTypeLike:
		if isContextScope(n.Arg) {
			pattern := n.Value
			return pattern.Match, literalPrefix(pattern)
		}
	case xast.NodeTypeEquals:
		for _, pair := range [][2]xast.IsNode{{n.Left, n.Right}, {n.Right, n.Left}} {
			if v, ok := pair[1].(xast.NodeValue); ok && isContextScope(pair[0]) {
				if want, ok := v.Value.(cedar.String); ok {
					return func(scope cedar.String) bool { return scope == want }, string(want)
				}
			}
		}
	}
	return nil, ""
}

// literalPrefix is the text before the first wildcard of p, which every
// string p matches starts with; "" when unknown. cedar-go keeps a
// pattern's parts unexported; its JSON form lists them, a leading literal
// as {"Literal": "..."}.
func literalPrefix(p types.Pattern) string {
	b, err := p.MarshalJSON()
	if err != nil {
		return ""
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) == 0 {
		return ""
	}
	var lit struct {
		Literal *string
	}
	if err := json.Unmarshal(parts[0], &lit); err != nil || lit.Literal == nil {
		return ""
	}
	return *lit.Literal
}

func isContextScope(n xast.IsNode) bool {
	a, ok := n.(xast.NodeTypeAccess)
	return ok && a.Value == "scope" && isContext(a.Arg)
}

func isContext(n xast.IsNode) bool {
	v, ok := n.(xast.NodeTypeVariable)
	return ok && v.Name == "context"
}

// field is an entity attribute or context key that jitid fills.
type field uint8

// The fields, by name; see the package comment and jitid.cedarschema.
const (
	fID field = iota
	fClass
	fPlatform
	fAttributes
	fPurpose
	fSensitivity
	fSensitivityLevel
	fDeadline
	fEntitlements
	fTimeZone
	fAuthenticatedAt
	fDelegator
	fTTL
	fTTLSeconds
	fAudience
	fTime
	fHour
	fMinute
	fWeekday
	fWeekdayNumber
	fLocal
	fAuthenticationAge
	fSecondsSinceAuthentication
	fTimeToDeadline
	fDelegatorAsserted
	numFields
)

var fieldByName = map[string]field{
	"id": fID, "class": fClass, "platform": fPlatform, "attributes": fAttributes, "purpose": fPurpose,
	"sensitivity": fSensitivity, "sensitivity_level": fSensitivityLevel, "deadline": fDeadline,
	"entitlements": fEntitlements, "time_zone": fTimeZone, "authenticated_at": fAuthenticatedAt,
	"delegator": fDelegator, "ttl": fTTL, "ttl_seconds": fTTLSeconds, "audience": fAudience, "time": fTime,
	"hour": fHour, "minute": fMinute, "weekday": fWeekday, "weekday_number": fWeekdayNumber, "local": fLocal,
	"authentication_age": fAuthenticationAge, "seconds_since_authentication": fSecondsSinceAuthentication,
	"time_to_deadline": fTimeToDeadline, "delegator_asserted": fDelegatorAsserted,
}

// fields says which entity attributes and context keys a set's policies
// can observe, so that evaluation builds only those: every record costs a
// copy, a sort and a hash of its keys in cedar-go.
//
// A policy observes an attribute of an entity only by naming it (`e.k`,
// `e["k"]`, `e has k`): entities compare by UID, never by attributes. So an
// attribute named nowhere in the set, on any expression, cannot change an
// answer. The context is a record a policy can also use whole (`context ==
// {...}`); any such use keeps every key. Free-form records (attributes,
// context.local) are kept whole when named. TestPlanMatchesFullEvaluation
// compares against requests built with every field.
type fields struct {
	named        [numFields]bool
	wholeContext bool
}

// attr reports whether entity attribute x is kept; nil f keeps every field
// (the reference evaluation).
func (f *fields) attr(x field) bool { return f == nil || f.named[x] }

// ctx reports whether context key x is kept; nil f keeps every key.
func (f *fields) ctx(x field) bool { return f == nil || f.wholeContext || f.named[x] }

// contextKeys is how many context keys are kept, at most.
func (f *fields) contextKeys() int {
	if f == nil || f.wholeContext {
		return int(numFields)
	}
	n := 0
	for _, named := range f.named {
		if named {
			n++
		}
	}
	return n
}

// addPolicy records what p names.
func (f *fields) addPolicy(p *xast.Policy) {
	name := func(k string) {
		if x, ok := fieldByName[k]; ok {
			f.named[x] = true
		}
	}
	visit := func(n xast.IsNode) bool {
		switch n := n.(type) {
		case xast.NodeTypeAccess:
			name(string(n.Value))
			if isContext(n.Arg) {
				return false
			}
		case xast.NodeTypeHas:
			name(string(n.Value))
			if isContext(n.Arg) {
				return false
			}
		case xast.NodeTypeVariable:
			if n.Name == "context" {
				f.wholeContext = true
			}
		}
		return true
	}
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), visit)
	}
}
