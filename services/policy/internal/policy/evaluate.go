package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	// The zone database is embedded so that local-time rules work in
	// minimal containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/cedar-policy/cedar-go"
)

// Cedar names of the jitid model; see the package comment.
const (
	AgentType     cedar.EntityType = "Jitid::Agent"
	DelegatorType cedar.EntityType = "Jitid::Delegator"
	TaskType      cedar.EntityType = "Jitid::Task"
	ActionType    cedar.EntityType = "Jitid::Action"
	PlatformType  cedar.EntityType = "Jitid::Platform"
)

// Decision is the answer to one Request.
type Decision struct {
	// Allow is true when at least one scope is granted.
	Allow bool
	// GrantedScopes, in request order, are never more than requested and
	// never outside the delegator's entitlements when those are given.
	GrantedScopes []string
	// MaxTTL is min(requested TTL, time to the task deadline, every
	// determining permit's @max_ttl); zero on a denial.
	MaxTTL time.Duration
	// Profile is FULL when a determining permit says so, else MINIMAL;
	// unspecified on a denial.
	Profile Profile
	// Obligations are the union of the determining permits' @obligation,
	// sorted.
	Obligations []string
	// MaxUses is the smallest @max_uses of the determining permits (how
	// many times the credential may be presented); zero for no limit.
	MaxUses int32
	// Reasons explain each scope not granted.
	Reasons []string
	// Policies are the ids of the policies that decided, sorted: the
	// permits of granted scopes and the forbids of forbidden ones.
	Policies      []string
	PolicyVersion string
	DecisionID    string
	// DelegatorUnproven is true on a denial because the request asserted
	// its delegator (no token proved it) and no policy lets the platform
	// do that.
	DelegatorUnproven bool
	// Assertion is the outcome of the delegator assertion check, when the
	// request asserted its delegator (scope AssertDelegatorAction).
	Assertion *ScopeResult
	// Scopes holds the outcome of each distinct requested scope, in request
	// order, for explanations.
	Scopes []ScopeResult
}

// ScopeResult is the outcome for one requested scope.
type ScopeResult struct {
	Scope   string
	Granted bool
	// Determining lists the ids of the policies that decided the scope
	// (sorted): the satisfied forbids when it was forbidden, else the
	// satisfied permits.
	Determining []string
	// Errors are the policies that failed to evaluate for this scope.
	Errors []PolicyError
	// NarrowedBy says what removed a scope Cedar permitted, e.g.
	// "delegator entitlements".
	NarrowedBy string
	// Reason says why the scope was not granted; empty when granted.
	Reason string
	// Sensitivity is what the scope was judged at: the task's, raised to
	// the scope catalogue's minimum for the scope.
	Sensitivity Sensitivity
	// CatalogueMinimum is the catalogue's minimum for the scope;
	// unspecified when the set has no catalogue or does not list it.
	CatalogueMinimum Sensitivity
}

// PolicyError is one policy whose evaluation failed.
type PolicyError struct {
	PolicyID string
	Message  string
}

// What ScopeResult.NarrowedBy says when jitid, not a policy, removed a
// scope that Cedar permitted.
const (
	// NarrowedByEntitlements: the delegator does not hold the scope.
	NarrowedByEntitlements = "delegator entitlements"
	// NarrowedByAgentChain: an agent above the sub-agent does not hold it.
	NarrowedByAgentChain = "agent chain"
	// NarrowedByDeadline: the task deadline has passed.
	NarrowedByDeadline = "task deadline"
	// NarrowedByCatalogue: the scope catalogue does not list the scope.
	// Such a scope is not put to Cedar at all.
	NarrowedByCatalogue = "scope catalogue"
)

// input is a request turned into Cedar values, once per request and shared
// by every scope.
type input struct {
	entities  cedar.EntityMap
	principal cedar.EntityUID
	resource  cedar.EntityUID
	// platform and delegator are the principal and resource of the
	// delegator assertion check.
	platform  cedar.EntityUID
	delegator cedar.EntityUID
	// base is the context without "scope"; shared is base as a record, for
	// the policies that do not read the scope.
	base   cedar.RecordMap
	shared cedar.Record
	// once is the answer of the set's scope-independent policies (plan.once).
	once outcome
	buf  *recordBuf
}

// release returns in's buffers; in must not be used afterwards.
func (in *input) release() {
	in.buf.release()
}

// outcome is Cedar's answer for one scope, gathered from Authorize calls
// over disjoint parts of the set: the policies that held, by effect, and
// those that failed. It decides as Cedar does over their union: a forbid
// denies, else a permit allows, else nothing does.
type outcome struct {
	forbids []cedar.PolicyID
	permits []cedar.PolicyID
	errors  []cedar.DiagnosticError
}

func (o *outcome) add(decision cedar.Decision, diag cedar.Diagnostic) {
	// Cedar reports the forbids that held when it denies, and the permits
	// that held when it allows (a deny without reasons had neither).
	for _, r := range diag.Reasons {
		if decision == cedar.Allow {
			o.permits = append(o.permits, r.PolicyID)
		} else {
			o.forbids = append(o.forbids, r.PolicyID)
		}
	}
	o.errors = append(o.errors, diag.Errors...)
}

// clone returns o with slices that appends do not share.
func (o *outcome) clone() outcome {
	return outcome{forbids: slices.Clip(o.forbids), permits: slices.Clip(o.permits), errors: slices.Clip(o.errors)}
}

// noScope is the action the scope-independent policies are evaluated with:
// they do not read it, and no requested scope is empty, so a misfiled
// policy would match no scope rather than another scope's.
var noScope = cedar.NewEntityUID(ActionType, "")

// evaluate decides req, which must be valid, at time now. It never parses
// Cedar text.
func (s *Set) evaluate(req *Request, now time.Time) Decision {
	d, ins := s.decide(req, now, false)
	ins.release()
	return d
}

// inputs are the Cedar inputs of one request, one per sensitivity its
// scopes are judged at (the scope catalogue may raise a scope's), built
// when first needed.
type inputs struct {
	s    *Set
	req  *Request
	now  time.Time
	f    *fields
	full bool
	by   [SensitivityCritical + 1]*input
}

// of returns the input of req judged at sensitivity sens.
func (ins *inputs) of(sens Sensitivity) *input {
	if in := ins.by[sens]; in != nil {
		return in
	}
	buf := recordBufs.Get().(*recordBuf)
	in := &buf.in
	in.buf = buf
	req := ins.req
	if sens != req.Task.Sensitivity {
		judged := *req
		judged.Task.Sensitivity = sens
		req = &judged
	}
	in.entities, in.principal, in.resource = entities(buf, ins.f, req)
	in.platform = cedar.NewEntityUID(PlatformType, cedar.String(req.Platform))
	in.delegator = cedar.NewEntityUID(DelegatorType, cedar.String(req.Delegator.ID))
	in.base = baseContext(buf, ins.f, req, ins.now)
	in.shared = cedar.NewRecord(in.base)
	if !ins.full && len(ins.s.plan.once) > 0 {
		in.once.add(cedar.Authorize(&ins.s.plan.once, in.entities, cedar.Request{
			Principal: in.principal, Action: noScope, Resource: in.resource, Context: in.shared,
		}))
	}
	ins.by[sens] = in
	return in
}

// release returns every input's buffers.
func (ins *inputs) release() {
	for i, in := range ins.by {
		if in != nil {
			in.release()
			ins.by[i] = nil
		}
	}
}

// judged returns the sensitivity scope is judged at, max(requested, the
// catalogue's minimum), the catalogue's minimum (unspecified without a
// catalogue), and false when the set has a catalogue that does not list
// scope.
func (s *Set) judged(req *Request, scope string) (judged, minimum Sensitivity, listed bool) {
	if s.catalogue == nil {
		return req.Task.Sensitivity, SensitivityUnspecified, true
	}
	minimum, listed = s.catalogue.Minimum(scope)
	return max(req.Task.Sensitivity, minimum), minimum, listed
}

// decide decides req. With full set, every scope is one Cedar call over the
// whole set with every field filled (the reference the plan is tested
// against); else the plan runs each policy only as often as its answer can
// change, on the fields the set can see.
func (s *Set) decide(req *Request, now time.Time, full bool) (Decision, *inputs) {
	now = now.UTC()
	d := Decision{PolicyVersion: s.version}
	ttl := req.TTL
	deadlinePassed := false
	if !req.Task.Deadline.IsZero() {
		left := req.Task.Deadline.Sub(now)
		if left <= 0 {
			deadlinePassed = true
		} else if left < ttl {
			ttl = left
		}
	}
	ins := &inputs{s: s, req: req, now: now, f: &s.plan.fields, full: full}
	if full {
		ins.f = nil
	}
	var policies, obligations []string

	if req.DelegatorAsserted {
		// The assertion is judged at the highest sensitivity the request's
		// listed scopes are, so that a platform allowed to assert for LOW
		// tasks cannot label a payment LOW.
		top := req.Task.Sensitivity
		for _, scope := range req.Scopes {
			if j, _, listed := s.judged(req, scope); listed {
				top = max(top, j)
			}
		}
		a := s.assertDelegator(req, top, ins.of(top))
		d.Assertion = &a
		policies = append(policies, a.Determining...)
		if !a.Granted {
			d.DelegatorUnproven = true
			d.Reasons = []string{a.Reason}
			d.Policies = sortedUnique(policies)
			return d, ins
		}
	}

	d.GrantedScopes = make([]string, 0, len(req.Scopes))
	d.Scopes = make([]ScopeResult, 0, len(req.Scopes))
	for i, scope := range req.Scopes {
		if slices.Contains(req.Scopes[:i], scope) {
			continue
		}
		judged, minimum, listed := s.judged(req, scope)
		if !listed {
			r := ScopeResult{Scope: scope, Sensitivity: req.Task.Sensitivity, NarrowedBy: NarrowedByCatalogue,
				Reason: fmt.Sprintf("scope %q is not in the scope catalogue (%s), so it is never granted", scope, path.Base(s.catalogue.Name()))}
			d.Reasons = append(d.Reasons, r.Reason)
			d.Scopes = append(d.Scopes, r)
			continue
		}
		in := ins.of(judged)
		var o outcome
		if full {
			o.add(cedar.Authorize(s.cedar, in.entities, in.cedarRequest(scope)))
		} else {
			o = s.authorizeScope(in, scope)
		}
		r := s.scopeResult(scope, &o)
		r.Sensitivity, r.CatalogueMinimum = judged, minimum
		if r.Granted {
			switch {
			case deadlinePassed:
				r.Granted = false
				r.NarrowedBy = NarrowedByDeadline
				r.Reason = fmt.Sprintf("scope %q: the task deadline has passed", scope)
			case !slices.Contains(req.Delegator.Entitlements, scope):
				// No entitlements is none held, never no check: a caller
				// that leaves the list out gets nothing.
				r.Granted = false
				r.NarrowedBy = NarrowedByEntitlements
				r.Reason = fmt.Sprintf("scope %q is not among the delegator's entitlements", scope)
				if len(req.Delegator.Entitlements) == 0 {
					r.Reason += " (the request gave none)"
				}
			default:
				for j, held := range req.AgentChainScopes {
					if !slices.Contains(held, scope) {
						r.Granted = false
						r.NarrowedBy = NarrowedByAgentChain
						r.Reason = fmt.Sprintf("scope %q is not held by agent %q above this one in the chain", scope, req.AgentChain[j].ID)
						break
					}
				}
			}
		}
		if !r.Granted && r.NarrowedBy == "" && judged > req.Task.Sensitivity {
			// The policies' answer, at a sensitivity the caller did not
			// ask for: say so.
			r.Reason += fmt.Sprintf(" (judged %s, the scope catalogue's minimum for it; the task was labelled %s)", judged, req.Task.Sensitivity)
		}
		if r.Granted {
			d.GrantedScopes = append(d.GrantedScopes, scope)
			for _, id := range r.Determining {
				m := s.meta[cedar.PolicyID(id)]
				if m.maxTTL > 0 && m.maxTTL < ttl {
					ttl = m.maxTTL
				}
				if m.profile > d.Profile {
					d.Profile = m.profile
				}
				obligations = append(obligations, m.obligations...)
				if m.maxUses > 0 && (d.MaxUses == 0 || m.maxUses < d.MaxUses) {
					d.MaxUses = m.maxUses
				}
			}
			policies = append(policies, r.Determining...)
		} else {
			d.Reasons = append(d.Reasons, r.Reason)
			if r.NarrowedBy == "" {
				policies = append(policies, r.Determining...)
			}
		}
		d.Scopes = append(d.Scopes, r)
	}
	d.Allow = len(d.GrantedScopes) > 0
	if !d.Allow {
		d.GrantedScopes = nil
		d.MaxUses = 0
	}
	if d.Allow {
		d.MaxTTL = ttl
		// Profile values grow with what is kept; MINIMAL unless someone
		// asked for FULL.
		d.Profile = max(d.Profile, ProfileMinimal)
	}
	d.Policies = sortedUnique(policies)
	d.Obligations = sortedUnique(obligations)
	return d, ins
}

// assertUID is the action of the delegator assertion check.
var assertUID = cedar.NewEntityUID(ActionType, cedar.String(AssertDelegatorAction))

// assertDelegator decides whether req.Platform may assert req's delegator:
// Cedar over the policies whose head names Jitid::Action::"delegator:assert"
// (no other policy takes part), with principal Jitid::Platform::"<platform>",
// the delegator as resource and in's context (the task judged at judged). Granted when a permit holds
// and no forbid holds or fails.
func (s *Set) assertDelegator(req *Request, judged Sensitivity, in *input) ScopeResult {
	r := ScopeResult{Scope: AssertDelegatorAction, Sensitivity: judged}
	refuse := fmt.Sprintf("platform %q may not assert delegators; send the delegator's subject_token", req.Platform)
	named := s.plan.byAction[assertUID]
	if req.Platform == "" || named == nil {
		if req.Platform == "" {
			refuse = "the caller names no platform, and only a platform a policy permits may assert delegators; send the delegator's subject_token"
		}
		r.Reason = refuse
		return r
	}
	var o outcome
	o.add(cedar.Authorize(&named.list, in.entities, in.assertRequest()))
	r = s.scopeResult(AssertDelegatorAction, &o)
	r.Sensitivity = judged
	if !r.Granted {
		r.Reason = refuse
		if len(r.Determining) > 0 {
			r.Reason += fmt.Sprintf(" (forbidden by policy %q)", r.Determining[0])
		}
	}
	return r
}

// assertRequest is the Cedar request of the delegator assertion check.
func (in *input) assertRequest() cedar.Request {
	return cedar.Request{
		Principal: in.platform,
		Action:    assertUID,
		Resource:  in.delegator,
		Context:   in.scopeContext(AssertDelegatorAction),
	}
}

// cedarRequest is the Cedar request for one scope of in, with the whole
// context.
func (in *input) cedarRequest(scope string) cedar.Request {
	return cedar.Request{
		Principal: in.principal,
		Action:    cedar.NewEntityUID(ActionType, cedar.String(scope)),
		Resource:  in.resource,
		Context:   in.scopeContext(scope),
	}
}

// scopeContext is the context record for scope: base plus "scope".
func (in *input) scopeContext(scope string) cedar.Record {
	// NewRecord copies the map, so one map serves every scope of a request.
	in.base["scope"] = cedar.String(scope)
	defer delete(in.base, "scope")
	return cedar.NewRecord(in.base)
}

// authorizeScope is Cedar's answer for scope: the request's answer of the
// scope-independent policies plus those of the policies that may answer
// differently for this scope (see plan).
func (s *Set) authorizeScope(in *input, scope string) outcome {
	o := in.once.clone()
	action := cedar.NewEntityUID(ActionType, cedar.String(scope))
	named := s.plan.byAction[action]
	every := &s.plan.anyAction
	if s.plan.guards != nil {
		// Only the policies whose scope guard admits this scope.
		b := in.buf
		b.pos = s.plan.guards.candidates(b.pos[:0], scope)
		b.list = b.list[:0]
		for _, i := range b.pos {
			if r := &s.plan.anyAction[i]; r.admits(cedar.String(scope)) {
				b.list = append(b.list, *r)
			}
		}
		every = &b.list
	}
	if len(*every) == 0 && named == nil {
		return o
	}
	req := cedar.Request{Principal: in.principal, Action: action, Resource: in.resource, Context: in.shared}
	if s.plan.anyActionReadsScope || (named != nil && named.readsScope) {
		req.Context = in.scopeContext(scope)
	}
	if len(*every) > 0 {
		o.add(cedar.Authorize(every, in.entities, req))
	}
	if named != nil {
		o.add(cedar.Authorize(&named.list, in.entities, req))
	}
	return o
}

// scopeResult applies jitid's rules to Cedar's answer for scope.
func (s *Set) scopeResult(scope string, o *outcome) ScopeResult {
	r := ScopeResult{Scope: scope}
	determining := o.permits
	switch {
	case len(o.forbids) > 0:
		determining = o.forbids
	case len(o.permits) > 0:
		r.Granted = true
	}
	if len(determining) > 0 {
		r.Determining = make([]string, len(determining))
		for i, id := range determining {
			r.Determining[i] = string(id)
		}
		slices.Sort(r.Determining)
	}
	// Sorted, so that logs and Explain do not depend on map order.
	slices.SortFunc(o.errors, func(a, b cedar.DiagnosticError) int { return strings.Compare(string(a.PolicyID), string(b.PolicyID)) })
	var failedForbid string
	for _, e := range o.errors {
		r.Errors = append(r.Errors, PolicyError{PolicyID: string(e.PolicyID), Message: e.Message})
		if s.meta[e.PolicyID].effect == cedar.Forbid && (failedForbid == "" || string(e.PolicyID) < failedForbid) {
			failedForbid = string(e.PolicyID)
		}
	}
	switch {
	case failedForbid != "" && r.Granted:
		// Cedar skips a policy that fails to evaluate. For a forbid that
		// would turn a policy bug (a missing `has` guard) into a grant, so
		// jitid fails closed instead.
		r.Granted = false
		r.Determining = []string{failedForbid}
		r.Reason = fmt.Sprintf("scope %q: forbid policy %q failed to evaluate", scope, failedForbid)
	case r.Granted:
	case len(r.Determining) == 0:
		r.Reason = fmt.Sprintf("no policy permits scope %q", scope)
	default:
		// Forbidden: the first forbid with a @reason speaks for all.
		r.Reason = fmt.Sprintf("scope %q: forbidden by policy %q", scope, r.Determining[0])
		for _, id := range r.Determining {
			if m := s.meta[cedar.PolicyID(id)]; m.reason != "" {
				r.Reason = fmt.Sprintf("scope %q: %s", scope, m.reason)
				break
			}
		}
	}
	return r
}

// recordBuf is what one decision reuses from the last: the map Cedar
// records are built through (NewRecord copies the map it is given, so one
// map can be cleared and refilled for the next record), the entity map, the
// input and scratch slices. Pooled; release clears it, and nothing in a
// Decision points into it.
type recordBuf struct {
	m    cedar.RecordMap // one record at a time
	list policyList      // the policies one scope runs, when filtered
	pos  []int           // scratch for guardIndex.candidates
	em   cedar.EntityMap
	in   input
}

var recordBufs = sync.Pool{New: func() any {
	return &recordBuf{m: make(cedar.RecordMap, smallMap), em: make(cedar.EntityMap, 4)}
}}

// smallMap is the most entries a Go map holds in one group. NewRecord's
// copy costs the source map's capacity, not its length, and clear keeps
// the capacity: a reused map that once grew past this would make every
// later copy pay for the large table.
const smallMap = 8

// record returns b.m as a record and empties b.m.
func (b *recordBuf) record() cedar.Record {
	r := cedar.NewRecord(b.m)
	if len(b.m) > smallMap {
		b.m = make(cedar.RecordMap, smallMap)
	} else {
		clear(b.m)
	}
	return r
}

// stringRecord is m as a record of strings.
func (b *recordBuf) stringRecord(m map[string]string) cedar.Record {
	if len(m) == 0 {
		return emptyRecord
	}
	for k, v := range m {
		b.m[cedar.String(k)] = cedar.String(v)
	}
	return b.record()
}

func (b *recordBuf) release() {
	clear(b.m)
	clear(b.list) // drop the policy pointers
	b.list = b.list[:0]
	clear(b.em)
	b.in = input{}
	recordBufs.Put(b)
}

// emptyRecord stands for every empty attributes map, which NewRecord would
// otherwise copy and hash each time.
var emptyRecord = cedar.NewRecord(nil)

// emptySet is every empty entitlements set, boxed once.
var emptySet cedar.Value = cedar.NewSet()

// entities builds the Cedar entities of req, with the attributes in f: the
// agent (in its chain), the chain's agents, the delegator and the task.
func entities(b *recordBuf, f *fields, req *Request) (cedar.EntityMap, cedar.EntityUID, cedar.EntityUID) {
	em := b.em
	principal := cedar.NewEntityUID(AgentType, cedar.String(req.Agent.ID))
	parents := chainUIDs(req.AgentChain)
	if req.Platform != "" {
		// The agent is `in` the platform the issuer acts for: policies
		// say `principal in Jitid::Platform::"spiffe://..."`. Without a
		// platform there is no such parent, so no platform rule matches.
		puid := cedar.NewEntityUID(PlatformType, cedar.String(req.Platform))
		em[puid] = cedar.Entity{UID: puid}
		uids := make([]cedar.EntityUID, 0, len(req.AgentChain)+1)
		for i := range req.AgentChain {
			uids = append(uids, cedar.NewEntityUID(AgentType, cedar.String(req.AgentChain[i].ID)))
		}
		parents = cedar.NewEntityUIDSet(append(uids, puid)...)
	}
	for i := range req.AgentChain {
		// The chain lists the nearest parent first, so the agents above
		// chain[i] are chain[i+1:]: `principal in X` holds for every X up
		// the chain, and so does `X in Y` between chain agents.
		a := &req.AgentChain[i]
		uid := cedar.NewEntityUID(AgentType, cedar.String(a.ID))
		em[uid] = agentEntity(b, f, uid, a, chainUIDs(req.AgentChain[i+1:]))
	}
	em[principal] = agentEntity(b, f, principal, &req.Agent, parents)

	d := &req.Delegator
	duid := cedar.NewEntityUID(DelegatorType, cedar.String(d.ID))
	if f.attr(fAttributes) {
		// Nested records first: b.m holds one record at a time.
		b.m["attributes"] = b.stringRecord(d.Attributes)
	}
	if f.attr(fID) {
		b.m["id"] = cedar.String(d.ID)
	}
	if f.attr(fEntitlements) {
		entitlements := emptySet
		if len(d.Entitlements) > 0 {
			vals := make([]cedar.Value, len(d.Entitlements))
			for i, e := range d.Entitlements {
				vals[i] = cedar.String(e)
			}
			entitlements = cedar.NewSet(vals...)
		}
		b.m["entitlements"] = entitlements
	}
	if d.TimeZone != "" && f.attr(fTimeZone) {
		b.m["time_zone"] = cedar.String(d.TimeZone)
	}
	if !d.AuthenticatedAt.IsZero() && f.attr(fAuthenticatedAt) {
		b.m["authenticated_at"] = cedar.NewDatetime(d.AuthenticatedAt)
	}
	em[duid] = cedar.Entity{UID: duid, Attributes: b.record()}

	t := &req.Task
	tuid := cedar.NewEntityUID(TaskType, cedar.String(t.ID))
	if f.attr(fID) {
		b.m["id"] = cedar.String(t.ID)
	}
	if f.attr(fPurpose) {
		b.m["purpose"] = cedar.String(t.Purpose)
	}
	if f.attr(fSensitivity) {
		b.m["sensitivity"] = sensitivityValue(t.Sensitivity)
	}
	if f.attr(fSensitivityLevel) {
		b.m["sensitivity_level"] = cedar.Long(t.Sensitivity)
	}
	if !t.Deadline.IsZero() && f.attr(fDeadline) {
		b.m["deadline"] = cedar.NewDatetime(t.Deadline)
	}
	em[tuid] = cedar.Entity{UID: tuid, Attributes: b.record()}
	return em, principal, tuid
}

func chainUIDs(chain []Agent) cedar.EntityUIDSet {
	if len(chain) == 0 {
		// The zero set is empty and costs no map.
		return cedar.EntityUIDSet{}
	}
	uids := make([]cedar.EntityUID, len(chain))
	for i := range chain {
		uids[i] = cedar.NewEntityUID(AgentType, cedar.String(chain[i].ID))
	}
	return cedar.NewEntityUIDSet(uids...)
}

func agentEntity(b *recordBuf, f *fields, uid cedar.EntityUID, a *Agent, parents cedar.EntityUIDSet) cedar.Entity {
	if f.attr(fAttributes) {
		b.m["attributes"] = b.stringRecord(a.Attributes)
	}
	if f.attr(fID) {
		b.m["id"] = cedar.String(a.ID)
	}
	if f.attr(fClass) {
		b.m["class"] = classValue(a.Class)
	}
	if f.attr(fPlatform) {
		b.m["platform"] = cedar.String(a.Platform)
	}
	return cedar.Entity{UID: uid, Parents: parents, Attributes: b.record()}
}

// baseContext returns the keys in f of the context record of req,
// without "scope", which is set per scope. The field list is the schema's
// Context (jitid.cedarschema); TestSchemaMatchesRequest keeps the two in
// step.
func baseContext(b *recordBuf, f *fields, req *Request, now time.Time) cedar.RecordMap {
	// Sized to what is kept (and "scope"): every scope's record copies it,
	// at the cost of its capacity.
	m := make(cedar.RecordMap, f.contextKeys()+1)
	if f.ctx(fDelegator) {
		m["delegator"] = cedar.NewEntityUID(DelegatorType, cedar.String(req.Delegator.ID))
	}
	if f.ctx(fSensitivity) {
		m["sensitivity"] = sensitivityValue(req.Task.Sensitivity)
	}
	if f.ctx(fTTL) {
		m["ttl"] = cedar.NewDuration(req.TTL)
	}
	if f.ctx(fTTLSeconds) {
		m["ttl_seconds"] = cedar.Long(req.TTL / time.Second)
	}
	if f.ctx(fAudience) {
		m["audience"] = cedar.String(req.Audience)
	}
	if f.ctx(fPlatform) {
		m["platform"] = cedar.String(req.Platform)
	}
	if f.ctx(fDelegatorAsserted) {
		m["delegator_asserted"] = cedar.Boolean(req.DelegatorAsserted)
	}
	if f.ctx(fTime) {
		m["time"] = cedar.NewDatetime(now)
	}
	if f.ctx(fHour) {
		m["hour"] = cedar.Long(now.Hour())
	}
	if f.ctx(fMinute) {
		m["minute"] = cedar.Long(now.Minute())
	}
	if f.ctx(fWeekday) {
		m["weekday"] = weekdayNames[now.Weekday()]
	}
	if f.ctx(fWeekdayNumber) {
		m["weekday_number"] = isoWeekday(now.Weekday())
	}
	if req.Delegator.TimeZone != "" && f.ctx(fLocal) {
		// Validate has loaded the zone once already, so this hits the cache.
		if loc, err := loadLocation(req.Delegator.TimeZone); err == nil {
			local := now.In(loc)
			h, mi, sec := local.Clock()
			b.m["time_zone"] = cedar.String(req.Delegator.TimeZone)
			b.m["hour"] = cedar.Long(h)
			b.m["minute"] = cedar.Long(mi)
			b.m["time_of_day"] = cedar.NewDuration(time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute +
				time.Duration(sec)*time.Second + time.Duration(local.Nanosecond()))
			b.m["weekday"] = weekdayNames[local.Weekday()]
			b.m["weekday_number"] = isoWeekday(local.Weekday())
			m["local"] = b.record()
		}
	}
	if at := req.Delegator.AuthenticatedAt; !at.IsZero() {
		age := now.Sub(at)
		if f.ctx(fAuthenticationAge) {
			m["authentication_age"] = cedar.NewDuration(age)
		}
		if f.ctx(fSecondsSinceAuthentication) {
			m["seconds_since_authentication"] = cedar.Long(age / time.Second)
		}
	}
	if dl := req.Task.Deadline; !dl.IsZero() && f.ctx(fTimeToDeadline) {
		m["time_to_deadline"] = cedar.NewDuration(dl.Sub(now))
	}
	return m
}

// The values of closed sets, boxed once: putting a cedar.String in a
// RecordMap (an interface) costs an allocation each time.
var (
	weekdayNames = [...]cedar.Value{cedar.String("Sunday"), cedar.String("Monday"), cedar.String("Tuesday"),
		cedar.String("Wednesday"), cedar.String("Thursday"), cedar.String("Friday"), cedar.String("Saturday")}
	sensitivityValues = func() (v [SensitivityCritical + 1]cedar.Value) {
		for s := range v {
			v[s] = cedar.String(Sensitivity(s).String())
		}
		return v
	}()
	classValues = func() (v [AgentClassRecurring + 1]cedar.Value) {
		for c := range v {
			v[c] = cedar.String(AgentClass(c).String())
		}
		return v
	}()
)

// sensitivityValue is s as policies see it; Validate has checked its range.
func sensitivityValue(s Sensitivity) cedar.Value {
	if s < 0 || int(s) >= len(sensitivityValues) {
		return cedar.String(s.String())
	}
	return sensitivityValues[s]
}

func classValue(c AgentClass) cedar.Value {
	if !c.valid() {
		return cedar.String(c.String())
	}
	return classValues[c]
}

// isoWeekday numbers days ISO 8601 style, Monday 1 to Sunday 7, so that
// "weekdays" is weekday_number <= 5.
func isoWeekday(d time.Weekday) cedar.Long {
	if d == time.Sunday {
		return 7
	}
	return cedar.Long(d)
}

// zones caches time.LoadLocation, which reads the zone database from disk.
var zones sync.Map // string → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	// "Local" would make a decision depend on the server's settings.
	if name == "Local" {
		return nil, fmt.Errorf("time zone %q is not allowed", name)
	}
	zones.Store(name, loc)
	return loc, nil
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}
