package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"
	cedarast "github.com/cedar-policy/cedar-go/ast"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Explanation is a Decision with, for each distinct requested scope, what
// every policy of the set did.
type Explanation struct {
	Decision Decision
	// Assertion explains the delegator assertion check, when the request
	// asserted its delegator: the policies naming the action
	// AssertDelegatorAction, the only ones that take part.
	Assertion *ScopeExplanation
	Scopes    []ScopeExplanation
}

// ScopeExplanation is the outcome of one scope and every policy's part in it.
type ScopeExplanation struct {
	ScopeResult
	// Policies has one entry per policy of the set, in file order.
	Policies []PolicyExplanation
}

// PolicyExplanation is what one policy did for one scope, and why.
type PolicyExplanation struct {
	Info
	// Applied is true when the policy's scope and conditions matched.
	Applied bool
	// Determining is true when the policy decided the scope's outcome.
	Determining bool
	// Error is the evaluation error, when the policy failed.
	Error string
	// Why says in words why the policy applied or not.
	Why string
}

// explainer holds one policy cut into parts, each a one-policy set that is
// satisfied exactly when that part holds, so that Explain can say which
// part stopped the policy from applying. Built once per set, on the first
// Explain: evaluation never needs it.
type explainer struct {
	self      *cedar.PolicySet
	principal *cedar.PolicySet // nil: principal unconstrained
	action    *cedar.PolicySet
	resource  *cedar.PolicySet
	scopeText [3]string
	conds     []*cedar.PolicySet
	condText  []string
}

func onePolicy(p *xast.Policy) *cedar.PolicySet {
	ps := cedar.NewPolicySet()
	ps.Add("part", cedar.NewPolicyFromAST((*cedarast.Policy)(p)))
	return ps
}

func newExplainer(p *cedar.Policy) *explainer {
	a := (*xast.Policy)(p.AST())
	all := func() *xast.Policy {
		return &xast.Policy{Effect: xast.EffectPermit, Principal: xast.ScopeTypeAll{}, Action: xast.ScopeTypeAll{}, Resource: xast.ScopeTypeAll{}}
	}
	e := &explainer{self: onePolicy(a)}
	if _, ok := a.Principal.(xast.ScopeTypeAll); !ok {
		v := all()
		v.Principal = a.Principal
		e.principal = onePolicy(v)
		e.scopeText[0] = scopeText(v, "principal")
	}
	if _, ok := a.Action.(xast.ScopeTypeAll); !ok {
		v := all()
		v.Action = a.Action
		e.action = onePolicy(v)
		e.scopeText[1] = scopeText(v, "action")
	}
	if _, ok := a.Resource.(xast.ScopeTypeAll); !ok {
		v := all()
		v.Resource = a.Resource
		e.resource = onePolicy(v)
		e.scopeText[2] = scopeText(v, "resource")
	}
	for _, c := range a.Conditions {
		v := all()
		v.Conditions = []xast.ConditionType{c}
		e.conds = append(e.conds, onePolicy(v))
		e.condText = append(e.condText, conditionText(v))
	}
	return e
}

// conditionText is the when or unless clause of p, on one line.
func conditionText(p *xast.Policy) string {
	text := string(cedar.NewPolicyFromAST((*cedarast.Policy)(p)).MarshalCedar())
	i := strings.Index(text, "when")
	if j := strings.Index(text, "unless"); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return "condition"
	}
	text = strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimSpace(text[i:]), ";")), " ")
	if len(text) > 160 {
		text = text[:157] + "..."
	}
	return text
}

// scopeText is the line of p's canonical text that holds the element.
func scopeText(p *xast.Policy, element string) string {
	for line := range strings.SplitSeq(string(cedar.NewPolicyFromAST((*cedarast.Policy)(p)).MarshalCedar()), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ","))
		line = strings.TrimPrefix(line, "permit (")
		if strings.HasPrefix(line, element) {
			return strings.TrimSuffix(line, ")")
		}
	}
	return element
}

func satisfied(ps *cedar.PolicySet, in *input, req cedar.Request) (bool, string) {
	_, diag := cedar.Authorize(ps, in.entities, req)
	if len(diag.Errors) > 0 {
		return false, diag.Errors[0].Message
	}
	return len(diag.Reasons) > 0, ""
}

func (s *Set) explainerOf(id string) *explainer {
	s.explainOnce.Do(func() {
		s.explainers = make(map[string]*explainer, len(s.ids))
		for _, id := range s.ids {
			s.explainers[id] = newExplainer(s.meta[cedar.PolicyID(id)].policy)
		}
	})
	return s.explainers[id]
}

// explain decides req like evaluate and explains every policy per scope.
func (s *Set) explain(req *Request, now time.Time) Explanation {
	d, ins := s.decide(req, now, false)
	defer ins.release()
	ex := Explanation{Decision: d}
	if a := d.Assertion; a != nil {
		se := ScopeExplanation{ScopeResult: *a}
		if named := s.plan.byAction[assertUID]; named != nil && req.Platform != "" {
			in := ins.of(a.Sensitivity)
			creq := in.assertRequest()
			for _, r := range named.list {
				se.Policies = append(se.Policies, s.explainPolicy(string(r.id), a, in, creq))
			}
		}
		ex.Assertion = &se
	}
	for _, r := range d.Scopes {
		se := ScopeExplanation{ScopeResult: r}
		if r.NarrowedBy == NarrowedByCatalogue {
			// Not put to Cedar: no policy had a say.
			ex.Scopes = append(ex.Scopes, se)
			continue
		}
		in := ins.of(r.Sensitivity)
		creq := in.cedarRequest(r.Scope)
		for _, id := range s.ids {
			se.Policies = append(se.Policies, s.explainPolicy(id, &r, in, creq))
		}
		ex.Scopes = append(ex.Scopes, se)
	}
	return ex
}

func (s *Set) explainPolicy(id string, r *ScopeResult, in *input, creq cedar.Request) PolicyExplanation {
	info, _ := s.Policy(id)
	m := s.meta[cedar.PolicyID(id)]
	pe := PolicyExplanation{Info: info}
	e := s.explainerOf(id)
	ok, evalErr := satisfied(e.self, in, creq)
	switch {
	case evalErr != "":
		pe.Error = evalErr
		pe.Determining = contains(r.Determining, id)
		if m.effect == cedar.Forbid {
			pe.Why = "failed to evaluate; a forbid that fails denies the scope: " + evalErr
		} else {
			pe.Why = "failed to evaluate, so it does not apply: " + evalErr
		}
		return pe
	case !ok:
		pe.Why = s.whyNot(e, in, creq)
		return pe
	}
	pe.Applied = true
	pe.Determining = contains(r.Determining, id)
	switch {
	case m.effect == cedar.Forbid && pe.Determining:
		pe.Why = "applies: forbids the scope"
		if m.reason != "" {
			pe.Why += " (" + m.reason + ")"
		}
	case m.effect == cedar.Forbid:
		pe.Why = "applies: forbids the scope, with other forbids deciding"
	case !pe.Determining:
		pe.Why = "applies, but a forbid overrides it"
	case r.Granted:
		pe.Why = "applies: permits the scope" + grantTerms(m)
	default:
		pe.Why = fmt.Sprintf("applies: permits the scope, which jitid then removed (%s)", r.NarrowedBy)
	}
	return pe
}

func grantTerms(m *policyMeta) string {
	var terms []string
	if m.maxTTL > 0 {
		terms = append(terms, "TTL at most "+m.maxTTL.String())
	}
	if m.maxUses > 0 {
		terms = append(terms, fmt.Sprintf("at most %d uses", m.maxUses))
	}
	if m.profile != ProfileUnspecified {
		terms = append(terms, "profile "+m.profile.String())
	}
	if len(m.obligations) > 0 {
		terms = append(terms, "obligations "+strings.Join(m.obligations, ", "))
	}
	if len(terms) == 0 {
		return ""
	}
	return "; " + strings.Join(terms, "; ")
}

// whyNot names the first part of a policy that does not hold.
func (s *Set) whyNot(e *explainer, in *input, creq cedar.Request) string {
	for i, part := range []*cedar.PolicySet{e.principal, e.action, e.resource} {
		if part == nil {
			continue
		}
		if ok, _ := satisfied(part, in, creq); !ok {
			return fmt.Sprintf("does not apply: %s does not match", e.scopeText[i])
		}
	}
	for i, c := range e.conds {
		ok, err := satisfied(c, in, creq)
		switch {
		case err != "":
			return fmt.Sprintf("does not apply: %s failed: %s", e.condText[i], err)
		case !ok:
			return fmt.Sprintf("does not apply: %s does not hold", e.condText[i])
		}
	}
	return "does not apply"
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
