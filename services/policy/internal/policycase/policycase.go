// Package policycase runs policy test cases: YAML files of requests and the
// decisions a policy set must give them. `policy test` and the Go tests of
// the shipped sets use it, so both go through the same code path as the
// service: the Engine.
//
// A case file:
//
//	time: 2026-03-04T10:30:00Z     # default time of execution for its cases
//	cases:
//	  - name: low-sensitivity research read
//	    request:
//	      agent: {id: agent-1, class: EPHEMERAL, platform: langgraph, attributes: {team: research}}
//	      agent_chain: [{id: orchestrator, held_scopes: [papers:read]}]
//	      delegator: {id: alice, attributes: {age_verified: "true"}, entitlements: [papers:read],
//	                  time_zone: Europe/Paris, authenticated_at: 2026-03-04T10:25:00Z}
//	      task: {id: t1, purpose: survey, sensitivity: LOW, deadline: 2026-03-04T12:00:00Z}
//	      scopes: [papers:read]
//	      ttl: 2h
//	      time: 2026-03-04T10:30:00Z   # overrides the file's
//	      audience: https://api.example.com
//	      platform: spiffe://acme.example/platform/support-bot  # the authenticated caller
//	      delegator_asserted: false    # true: the platform vouches for the delegator
//	    expect:
//	      allow: true
//	      scopes: [papers:read]        # every field but allow is optional;
//	      ttl: 1h                      # one that is given must match exactly
//	      profile: MINIMAL
//	      obligations: []
//	      policies: [low-sensitivity]
//	      reasons: []
//	      delegator_unproven: false
//
// The delegator's entitlements bound what is granted; a case that gives
// none grants nothing, as in the service.
package policycase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

// ErrCaseFile means a case file cannot be read or does not parse; the
// wrapped error says where.
var ErrCaseFile = errors.New("bad case file")

// Suffix ends the name of every case file that Discover finds.
const Suffix = ".cases.yaml"

// File is one parsed case file.
type File struct {
	Path  string
	Time  time.Time
	Cases []Case
}

// Case is one request and what the decision must be.
type Case struct {
	Name    string
	Line    int
	Request policy.Request
	Expect  Expect
}

// Expect is the decision a case wants. Nil fields are not checked.
type Expect struct {
	Allow       bool
	Scopes      *[]string
	TTL         *time.Duration
	Profile     *policy.Profile
	Obligations *[]string
	Policies    *[]string
	Reasons     *[]string
	MaxUses     *int32
	// DelegatorUnproven: the platform asserted the delegator without
	// being allowed to.
	DelegatorUnproven *bool
}

type fileDoc struct {
	Time  string      `yaml:"time"`
	Cases []yaml.Node `yaml:"cases"`
}

type caseDoc struct {
	Name    string     `yaml:"name"`
	Request requestDoc `yaml:"request"`
	Expect  expectDoc  `yaml:"expect"`
}

type agentDoc struct {
	ID         string            `yaml:"id"`
	Class      string            `yaml:"class"`
	Platform   string            `yaml:"platform"`
	Attributes map[string]string `yaml:"attributes"`
	HeldScopes *[]string         `yaml:"held_scopes"`
}

type requestDoc struct {
	Agent      agentDoc   `yaml:"agent"`
	AgentChain []agentDoc `yaml:"agent_chain"`
	Delegator  struct {
		ID              string            `yaml:"id"`
		Attributes      map[string]string `yaml:"attributes"`
		Entitlements    []string          `yaml:"entitlements"`
		TimeZone        string            `yaml:"time_zone"`
		AuthenticatedAt string            `yaml:"authenticated_at"`
	} `yaml:"delegator"`
	Task struct {
		ID          string `yaml:"id"`
		Purpose     string `yaml:"purpose"`
		Sensitivity string `yaml:"sensitivity"`
		Deadline    string `yaml:"deadline"`
	} `yaml:"task"`
	Scopes            []string `yaml:"scopes"`
	TTL               string   `yaml:"ttl"`
	Time              string   `yaml:"time"`
	Audience          string   `yaml:"audience"`
	Platform          string   `yaml:"platform"`
	DelegatorAsserted bool     `yaml:"delegator_asserted"`
}

type expectDoc struct {
	Allow       *bool     `yaml:"allow"`
	Scopes      *[]string `yaml:"scopes"`
	TTL         *string   `yaml:"ttl"`
	Profile     *string   `yaml:"profile"`
	Obligations *[]string `yaml:"obligations"`
	Policies    *[]string `yaml:"policies"`
	Reasons     *[]string `yaml:"reasons"`
	MaxUses     *int32    `yaml:"max_uses"`
	// DelegatorUnproven, when given, must match the decision's.
	DelegatorUnproven *bool `yaml:"delegator_unproven"`
}

// Discover returns the case files at p: p itself when it is a file, else
// every *.cases.yaml below it, sorted.
func Discover(p string) ([]string, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCaseFile, err)
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), Suffix) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCaseFile, err)
	}
	slices.Sort(out)
	return out, nil
}

// Load reads and parses a case file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCaseFile, err)
	}
	return Parse(path, b)
}

// Parse parses the content of a case file; path names it in errors.
func Parse(path string, content []byte) (*File, error) {
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", ErrCaseFile, path, line, fmt.Sprintf(format, args...))
	}
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(content))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCaseFile, path, err)
	}
	f := &File{Path: path}
	if doc.Time != "" {
		t, err := time.Parse(time.RFC3339, doc.Time)
		if err != nil {
			return nil, bad(1, "time %q: want RFC 3339", doc.Time)
		}
		f.Time = t
	}
	if len(doc.Cases) == 0 {
		return nil, bad(1, "no cases")
	}
	for _, n := range doc.Cases {
		var cd caseDoc
		if err := decodeStrict(&n, &cd); err != nil {
			return nil, bad(n.Line, "%v", err)
		}
		c, err := toCase(cd, f.Time)
		if err != nil {
			return nil, bad(n.Line, "case %q: %v", cd.Name, err)
		}
		c.Line = n.Line
		f.Cases = append(f.Cases, c)
	}
	return f, nil
}

// decodeStrict decodes n refusing unknown keys: a misspelt "expect" field
// must not turn into a check that silently passes.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want RFC 3339", field, s)
	}
	return t, nil
}

func toAgent(a agentDoc) (policy.Agent, error) {
	out := policy.Agent{ID: a.ID, Platform: a.Platform, Attributes: a.Attributes}
	switch a.Class {
	case "", "UNSPECIFIED":
	case "EPHEMERAL":
		out.Class = policy.AgentClassEphemeral
	case "RECURRING":
		out.Class = policy.AgentClassRecurring
	default:
		return out, fmt.Errorf("agent class %q: want EPHEMERAL or RECURRING", a.Class)
	}
	return out, nil
}

// ParseSensitivity maps "LOW".."CRITICAL" onto policy.Sensitivity.
func ParseSensitivity(s string) (policy.Sensitivity, error) {
	for v := policy.SensitivityLow; v <= policy.SensitivityCritical; v++ {
		if v.String() == s {
			return v, nil
		}
	}
	return policy.SensitivityUnspecified, fmt.Errorf("sensitivity %q: want LOW, MEDIUM, HIGH or CRITICAL", s)
}

func toCase(cd caseDoc, fileTime time.Time) (Case, error) {
	c := Case{Name: cd.Name}
	if c.Name == "" {
		return c, errors.New("name: required")
	}
	rd := cd.Request
	var err error
	r := &c.Request
	if r.Agent, err = toAgent(rd.Agent); err != nil {
		return c, err
	}
	anyHeld := false
	for _, a := range rd.AgentChain {
		anyHeld = anyHeld || a.HeldScopes != nil
	}
	for i, a := range rd.AgentChain {
		pa, err := toAgent(a)
		if err != nil {
			return c, err
		}
		r.AgentChain = append(r.AgentChain, pa)
		if anyHeld {
			if a.HeldScopes == nil {
				return c, fmt.Errorf("agent_chain[%d]: held_scopes: give it for every agent of the chain or none", i)
			}
			r.AgentChainScopes = append(r.AgentChainScopes, append([]string{}, *a.HeldScopes...))
		}
	}
	d := rd.Delegator
	r.Delegator = policy.Delegator{ID: d.ID, Attributes: d.Attributes, Entitlements: d.Entitlements, TimeZone: d.TimeZone}
	if r.Delegator.AuthenticatedAt, err = parseTime("delegator.authenticated_at", d.AuthenticatedAt); err != nil {
		return c, err
	}
	r.Task = policy.Task{ID: rd.Task.ID, Purpose: rd.Task.Purpose}
	if r.Task.Sensitivity, err = ParseSensitivity(rd.Task.Sensitivity); err != nil {
		return c, err
	}
	if r.Task.Deadline, err = parseTime("task.deadline", rd.Task.Deadline); err != nil {
		return c, err
	}
	r.Scopes = rd.Scopes
	if rd.TTL != "" {
		if r.TTL, err = time.ParseDuration(rd.TTL); err != nil {
			return c, fmt.Errorf("ttl %q: want a Go duration such as 15m", rd.TTL)
		}
	}
	if r.Time, err = parseTime("time", rd.Time); err != nil {
		return c, err
	}
	if r.Time.IsZero() {
		r.Time = fileTime
	}
	if r.Time.IsZero() {
		// A case must not depend on when it runs.
		return c, errors.New("time: required (on the case or the file)")
	}
	r.Audience = rd.Audience
	r.Platform = rd.Platform
	r.DelegatorAsserted = rd.DelegatorAsserted

	e := cd.Expect
	if e.Allow == nil {
		return c, errors.New("expect.allow: required")
	}
	c.Expect = Expect{Allow: *e.Allow, Scopes: e.Scopes, Obligations: e.Obligations, Policies: e.Policies, Reasons: e.Reasons, MaxUses: e.MaxUses, DelegatorUnproven: e.DelegatorUnproven}
	if e.TTL != nil {
		ttl, err := time.ParseDuration(*e.TTL)
		if err != nil {
			return c, fmt.Errorf("expect.ttl %q: want a Go duration such as 15m", *e.TTL)
		}
		c.Expect.TTL = &ttl
	}
	if e.Profile != nil {
		var p policy.Profile
		switch *e.Profile {
		case "MINIMAL":
			p = policy.ProfileMinimal
		case "FULL":
			p = policy.ProfileFull
		case "", "UNSPECIFIED":
		default:
			return c, fmt.Errorf("expect.profile %q: want MINIMAL or FULL", *e.Profile)
		}
		c.Expect.Profile = &p
	}
	return c, nil
}

// Result is the outcome of one case.
type Result struct {
	File string
	Case Case
	// Diffs lists, one line each, what differs from the expectation;
	// empty when the case passed.
	Diffs []string
	// Err is set when the request itself was refused (invalid).
	Err      error
	Decision policy.Decision
}

// Passed reports whether the case passed.
func (r *Result) Passed() bool { return r.Err == nil && len(r.Diffs) == 0 }

// Run evaluates every case of f against set.
func Run(ctx context.Context, set *policy.Set, f *File) []Result {
	engine := policy.NewEngine(set, policy.EngineOptions{
		NewDecisionID: func() (string, error) { return "case", nil },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	out := make([]Result, 0, len(f.Cases))
	for _, c := range f.Cases {
		r := Result{File: f.Path, Case: c}
		d, err := engine.Evaluate(ctx, c.Request)
		if err != nil {
			r.Err = err
		} else {
			r.Decision = d
			r.Diffs = compare(c.Expect, d)
		}
		out = append(out, r)
	}
	return out
}

func compare(e Expect, d policy.Decision) []string {
	var diffs []string
	add := func(field string, want, got any) {
		diffs = append(diffs, fmt.Sprintf("%-11s want %v, got %v", field+":", want, got))
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "[]"
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	if e.Allow != d.Allow {
		add("allow", e.Allow, d.Allow)
	}
	if e.Scopes != nil && !slices.Equal(*e.Scopes, d.GrantedScopes) {
		add("scopes", list(*e.Scopes), list(d.GrantedScopes))
	}
	if e.TTL != nil && *e.TTL != d.MaxTTL {
		add("ttl", *e.TTL, d.MaxTTL)
	}
	if e.Profile != nil && *e.Profile != d.Profile {
		add("profile", *e.Profile, d.Profile)
	}
	if e.MaxUses != nil && *e.MaxUses != d.MaxUses {
		add("max_uses", *e.MaxUses, d.MaxUses)
	}
	if e.Obligations != nil && !slices.Equal(sorted(*e.Obligations), d.Obligations) {
		add("obligations", list(sorted(*e.Obligations)), list(d.Obligations))
	}
	if e.Policies != nil && !slices.Equal(sorted(*e.Policies), d.Policies) {
		add("policies", list(sorted(*e.Policies)), list(d.Policies))
	}
	if e.DelegatorUnproven != nil && *e.DelegatorUnproven != d.DelegatorUnproven {
		add("delegator_unproven", *e.DelegatorUnproven, d.DelegatorUnproven)
	}
	if e.Reasons != nil && !slices.Equal(*e.Reasons, d.Reasons) {
		add("reasons", fmt.Sprintf("%q", *e.Reasons), fmt.Sprintf("%q", d.Reasons))
	}
	return diffs
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Report writes results to w, one line per case and the diffs of each
// failure, and returns the number of failures.
func Report(w io.Writer, results []Result, verbose bool) int {
	failed := 0
	for _, r := range results {
		loc := fmt.Sprintf("%s:%d", r.File, r.Case.Line)
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(w, "FAIL %s %s\n     request refused: %v\n", loc, r.Case.Name, r.Err)
		case len(r.Diffs) > 0:
			failed++
			fmt.Fprintf(w, "FAIL %s %s\n", loc, r.Case.Name)
			for _, d := range r.Diffs {
				fmt.Fprintf(w, "     %s\n", d)
			}
			if len(r.Decision.Reasons) > 0 {
				fmt.Fprintf(w, "     (decision reasons: %q; policies: %v)\n", r.Decision.Reasons, r.Decision.Policies)
			}
		case verbose:
			fmt.Fprintf(w, "ok   %s %s\n", loc, r.Case.Name)
		}
	}
	return failed
}
