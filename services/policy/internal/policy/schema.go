package policy

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	schemaast "github.com/cedar-policy/cedar-go/x/exp/schema/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/jitid/jitid/services/policy/policies"
)

// The schema names jitid relies on: entity types in namespace Jitid and the
// common type Context, the context of every action.
const (
	schemaNamespace types.Path = "Jitid"
	contextType     types.Path = "Context"
	// anyAction is declared beside the actions the policies name, so that
	// a policy with an unconstrained action is type checked too.
	anyAction = "*"
)

// Schema is a parsed Cedar schema that jitid has checked against the values
// it sends: every entity attribute and context field it declares is one that
// jitid fills, with the same type and optionality. Policies validated
// against it therefore cannot read what is never there without a `has`.
type Schema struct {
	name string
	ast  *schemaast.Schema

	mu         sync.Mutex
	validators map[string]*validator
}

type validator struct {
	v        *validate.Validator
	resolved *resolved.Schema
}

// Name returns the schema's file name.
func (s *Schema) Name() string { return s.name }

var (
	builtinOnce   sync.Once
	builtinSchema *resolved.Schema
	errBuiltin    error
)

// builtin returns the resolved built-in schema, the reference user schemas
// are checked against.
func builtin() (*resolved.Schema, error) {
	builtinOnce.Do(func() {
		var s schema.Schema
		s.SetFilename(policies.SchemaName)
		if errBuiltin = s.UnmarshalCedar(policies.Schema()); errBuiltin != nil {
			return
		}
		builtinSchema, errBuiltin = withActions(s.AST(), nil)
	})
	return builtinSchema, errBuiltin
}

// ParseSchema parses a .cedarschema file and checks it against jitid's
// model. Errors are *LoadError wrapping ErrSchema.
func ParseSchema(f File) (*Schema, error) {
	fail := func(line, col int, format string, args ...any) error {
		return &LoadError{File: f.Path, Line: line, Column: col, Err: fmt.Errorf("%w: %s", ErrSchema, fmt.Sprintf(format, args...))}
	}
	var s schema.Schema
	s.SetFilename(f.Path)
	if err := s.UnmarshalCedar(f.Content); err != nil {
		line, col, msg := splitPosition(err.Error(), f.Path)
		return nil, fail(line, col, "%s", msg)
	}
	got, err := withActions(s.AST(), nil)
	if err != nil {
		return nil, fail(0, 0, "%v", err)
	}
	want, err := builtin()
	if err != nil {
		return nil, fmt.Errorf("built-in schema: %w", err)
	}
	for _, name := range []types.EntityType{AgentType, DelegatorType, TaskType} {
		g, ok := got.Entities[name]
		if !ok {
			return nil, fail(0, 0, "entity type %s is not declared", name)
		}
		w := want.Entities[name]
		// Fewer parent types than jitid builds is fine (an older schema
		// without Platform): policies can then test less.
		for _, p := range g.ParentTypes {
			if !slices.Contains(w.ParentTypes, p) {
				return nil, fail(0, 0, "entity type %s is declared `in %v`, but jitid builds it `in` at most %v", name, g.ParentTypes, w.ParentTypes)
			}
		}
		if err := sameShape(string(name), g.Shape, w.Shape); err != nil {
			return nil, fail(0, 0, "%v", err)
		}
	}
	ctx := got.Actions[cedar.NewEntityUID(ActionType, anyAction)].AppliesTo.Context
	if err := sameShape("context", ctx, want.Actions[cedar.NewEntityUID(ActionType, anyAction)].AppliesTo.Context); err != nil {
		return nil, fail(0, 0, "%v", err)
	}
	return &Schema{name: f.Path, ast: s.AST(), validators: map[string]*validator{}}, nil
}

// sameShape checks that every attribute got declares is one jitid sends
// (in want) with the same type and optionality. Fewer is fine: policies can
// then read less. The free-form "attributes" records are the exception: any
// key may be declared there, as long as it is an optional String, since
// callers send whichever keys they like.
func sameShape(what string, got, want resolved.RecordType) error {
	for _, k := range slices.Sorted(maps.Keys(got)) {
		g := got[k]
		w, ok := want[k]
		if !ok {
			return fmt.Errorf("%s.%s is not an attribute jitid sends", what, k)
		}
		if k == "attributes" {
			rec, ok := g.Type.(resolved.RecordType)
			if !ok || g.Optional {
				return fmt.Errorf("%s.attributes must be a required record of optional String attributes", what)
			}
			for _, ak := range slices.Sorted(maps.Keys(rec)) {
				if a := rec[ak]; !a.Optional || !reflect.DeepEqual(a.Type, resolved.IsType(resolved.StringType{})) {
					return fmt.Errorf("%s.attributes.%s must be declared optional (?) String: callers may leave it out", what, ak)
				}
			}
			continue
		}
		if g.Optional != w.Optional {
			if w.Optional {
				return fmt.Errorf("%s.%s must be optional (?): jitid leaves it out when unknown", what, k)
			}
			return fmt.Errorf("%s.%s must not be optional: jitid always sends it", what, k)
		}
		if !reflect.DeepEqual(g.Type, w.Type) {
			return fmt.Errorf("%s.%s has a different type from the one jitid sends (see jitid.cedarschema)", what, k)
		}
	}
	return nil
}

// withActions resolves sch with one action per name in actions, plus
// anyAction, each applying to Jitid::Agent and Jitid::Task with the Context
// common type. Scopes are open ended, so the schema cannot list them; jitid
// declares those the policies name instead.
func withActions(sch *schemaast.Schema, actions []string) (*resolved.Schema, error) {
	ns, ok := sch.Namespaces[schemaNamespace]
	if !ok {
		return nil, fmt.Errorf("namespace %s is not declared", schemaNamespace)
	}
	if _, ok := ns.CommonTypes[schemaast.Ident(contextType)]; !ok {
		return nil, fmt.Errorf("type %s::%s (the context) is not declared", schemaNamespace, contextType)
	}
	declared := make(schemaast.Actions, len(ns.Actions)+len(actions)+1)
	maps.Copy(declared, ns.Actions)
	_, hasPlatform := ns.Entities["Platform"]
	for _, a := range append([]string{anyAction}, actions...) {
		if _, ok := declared[types.String(a)]; ok {
			continue
		}
		applies := &schemaast.AppliesTo{
			Principals: []schemaast.EntityTypeRef{"Agent"},
			Resources:  []schemaast.EntityTypeRef{"Task"},
			Context:    schemaast.TypeRef(contextType),
		}
		if a == AssertDelegatorAction && hasPlatform {
			// The delegator assertion check: may this platform vouch for
			// this delegator without a token?
			applies.Principals = []schemaast.EntityTypeRef{"Platform"}
			applies.Resources = []schemaast.EntityTypeRef{"Delegator"}
		}
		declared[types.String(a)] = schemaast.Action{AppliesTo: applies}
	}
	ns.Actions = declared
	out := *sch
	out.Namespaces = maps.Clone(sch.Namespaces)
	out.Namespaces[schemaNamespace] = ns
	return schema.NewSchemaFromAST(&out).Resolve()
}

// actionLiteral finds the actions a policy names, in its canonical text.
var actionLiteral = regexp.MustCompile(`Jitid::Action::("(?:[^"\\]|\\.)*")`)

func policyActions(p *cedar.Policy) []string {
	var out []string
	for _, m := range actionLiteral.FindAllStringSubmatch(string(p.MarshalCedar()), -1) {
		a, err := strconv.Unquote(m[1])
		if err != nil {
			a = m[1][1 : len(m[1])-1]
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validatePolicy checks p against the schema and returns the validator's
// complaints, without duplicates.
func (s *Schema) validatePolicy(p *cedar.Policy) ([]string, error) {
	actions := policyActions(p)
	key := strings.Join(actions, "\x00")
	s.mu.Lock()
	v, ok := s.validators[key]
	s.mu.Unlock()
	if !ok {
		r, err := withActions(s.ast, actions)
		if err != nil {
			return nil, err
		}
		v = &validator{v: validate.New(r, validate.WithStrict()), resolved: r}
		s.mu.Lock()
		s.validators[key] = v
		s.mu.Unlock()
	}
	ast := (*xast.Policy)(p.AST())
	msgs := undeclaredHas(v.resolved, ast)
	err := v.v.Policy("", ast)
	for _, e := range flatten(err) {
		msg := actionSuffix.ReplaceAllString(e.Error(), "")
		if strings.Contains(msg, "unable to guarantee safety of access to optional attribute") {
			msg += " (guard it with `has`)"
		}
		if !slices.Contains(msgs, msg) {
			msgs = append(msgs, msg)
		}
	}
	return msgs, nil
}

// actionSuffix is how the validator says for which declared action it
// found a fault; jitid's actions are all alike, so it is noise.
var actionSuffix = regexp.MustCompile(` for Jitid::Action::"(?:[^"\\]|\\.)*"$`)

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// positionIn finds "file:line:col" in a parser message.
var positionIn = regexp.MustCompile(`:(\d+):(\d+):?\s*`)

func splitPosition(msg, file string) (int, int, string) {
	i := strings.Index(msg, file)
	if i < 0 {
		return 0, 0, msg
	}
	rest := msg[i+len(file):]
	m := positionIn.FindStringSubmatchIndex(rest)
	if m == nil || m[0] != 0 {
		return 0, 0, msg
	}
	line, _ := strconv.Atoi(rest[m[2]:m[3]])
	col, _ := strconv.Atoi(rest[m[4]:m[5]])
	return line, col, strings.TrimSpace(msg[:i] + rest[m[1]:])
}

// undeclaredHas finds `e has k` where e's type is known from the schema and
// declares no k. Cedar's validator types such a test as false and says
// nothing, so a typo in a forbid's `has` guard would silently switch the
// forbid off. jitid rejects it instead.
func undeclaredHas(r *resolved.Schema, p *xast.Policy) []string {
	ctx := r.Actions[cedar.NewEntityUID(ActionType, anyAction)].AppliesTo.Context
	var typeOf func(n xast.IsNode) (resolved.IsType, string)
	typeOf = func(n xast.IsNode) (resolved.IsType, string) {
		switch n := n.(type) {
		case xast.NodeTypeVariable:
			switch n.Name {
			case "principal":
				return resolved.EntityType(AgentType), "principal"
			case "resource":
				return resolved.EntityType(TaskType), "resource"
			case "context":
				return ctx, "context"
			}
		case xast.NodeTypeAccess:
			t, path := typeOf(n.Arg)
			if rec, ok := recordOf(r, t); ok {
				if a, ok := rec[n.Value]; ok {
					return a.Type, path + "." + string(n.Value)
				}
			}
		}
		return nil, ""
	}
	var msgs []string
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			h, ok := n.(xast.NodeTypeHas)
			if !ok {
				return true
			}
			t, path := typeOf(h.Arg)
			if rec, ok := recordOf(r, t); ok {
				if _, ok := rec[h.Value]; !ok {
					msgs = append(msgs, fmt.Sprintf("`%s has %s`: the schema declares no attribute %q there, so the test is always false (declare it in the schema if callers send it)", path, h.Value, h.Value))
				}
			}
			return true
		})
	}
	return msgs
}

func recordOf(r *resolved.Schema, t resolved.IsType) (resolved.RecordType, bool) {
	switch t := t.(type) {
	case resolved.RecordType:
		return t, true
	case resolved.EntityType:
		e, ok := r.Entities[types.EntityType(t)]
		return e.Shape, ok
	}
	return nil, false
}
