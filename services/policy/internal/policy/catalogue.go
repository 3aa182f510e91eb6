package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// CatalogueName is the file name of a set's scope catalogue: the one file
// of that name in the policy directory (at any depth) is read with the
// .cedar files, enters the set's version and is reloaded with them.
const CatalogueName = "scopes.yaml"

// ErrCatalogue means the scope catalogue does not parse or breaks a rule:
// an unknown sensitivity, a bad pattern, a scope listed twice, or more than
// one catalogue in the set.
var ErrCatalogue = errors.New("bad scope catalogue")

// Catalogue is the scope catalogue a security team keeps beside the
// policies: every scope jitid may grant and the least sensitivity a task
// asking for it is judged at, whatever the caller labelled it. A scope the
// catalogue does not list is never granted.
//
// The file:
//
//	scopes:
//	  - scope: payments:transfer      # an exact scope
//	    min_sensitivity: CRITICAL
//	    description: moves money out of an account
//	  - scope: payments:*             # every scope starting "payments:"
//	    min_sensitivity: HIGH
//	  - scope: "*"                    # every scope (turns the catalogue
//	    min_sensitivity: LOW          # into minimums only)
//
// A pattern is an exact scope or a prefix followed by one trailing `*`.
// The most specific entry decides: the exact scope, else the longest
// prefix.
type Catalogue struct {
	name     string
	exact    map[string]Sensitivity
	prefixes []catalogueEntry // longest prefix first
}

type catalogueEntry struct {
	prefix string
	min    Sensitivity
}

// catalogueFile is the YAML shape of a catalogue.
type catalogueFile struct {
	Scopes []struct {
		Scope          string `yaml:"scope"`
		MinSensitivity string `yaml:"min_sensitivity"`
		Description    string `yaml:"description"`
	} `yaml:"scopes"`
}

// ParseCatalogue parses and checks a catalogue file. Every fault is
// reported, each a *LoadError wrapping ErrCatalogue.
func ParseCatalogue(f File) (*Catalogue, error) {
	fail := func(line int, format string, args ...any) error {
		return &LoadError{File: f.Path, Line: line, Column: 1, Err: fmt.Errorf("%w: %s", ErrCatalogue, fmt.Sprintf(format, args...))}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(f.Content, &doc); err != nil {
		return nil, fail(0, "%v", err)
	}
	if len(doc.Content) == 0 {
		// Like an empty policy set: denying every scope is far more likely
		// a truncated file than an intent.
		return nil, fail(0, "the file is empty; list every scope the set may grant under `scopes:`")
	}
	var cf catalogueFile
	dec := yaml.NewDecoder(bytes.NewReader(f.Content))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		return nil, fail(0, "%v", err)
	}
	lines := entryLines(&doc)
	c := &Catalogue{name: f.Path, exact: map[string]Sensitivity{}}
	seen := map[string]int{}
	var errs []error
	for i, e := range cf.Scopes {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		pattern := strings.TrimSpace(e.Scope)
		minimum, ok := parseSensitivity(e.MinSensitivity)
		switch {
		case pattern == "" || len(pattern) > MaxScopeBytes || strings.ContainsFunc(pattern, isSpaceOrControl):
			errs = append(errs, fail(line, "scope %q: want 1 to %d bytes without spaces", e.Scope, MaxScopeBytes))
			continue
		case strings.Contains(strings.TrimSuffix(pattern, "*"), "*"):
			errs = append(errs, fail(line, "scope %q: a pattern has one `*`, at its end (\"payments:*\")", e.Scope))
			continue
		case !ok:
			errs = append(errs, fail(line, "scope %q: min_sensitivity %q: want LOW, MEDIUM, HIGH or CRITICAL", e.Scope, e.MinSensitivity))
			continue
		case pattern == AssertDelegatorAction:
			errs = append(errs, fail(line, "scope %q is reserved for the delegator assertion check and is never granted", pattern))
			continue
		}
		if prev, dup := seen[pattern]; dup {
			errs = append(errs, fail(line, "scope %q is listed twice (also at line %d)", pattern, prev))
			continue
		}
		seen[pattern] = line
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			c.prefixes = append(c.prefixes, catalogueEntry{prefix: prefix, min: minimum})
		} else {
			c.exact[pattern] = minimum
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(cf.Scopes) == 0 {
		return nil, fail(0, "lists no scope, so every request would be denied; list every scope the set may grant under `scopes:`")
	}
	slices.SortFunc(c.prefixes, func(a, b catalogueEntry) int { return len(b.prefix) - len(a.prefix) })
	return c, nil
}

// entryLines returns the line of each entry of the scopes list, for
// error messages.
func entryLines(doc *yaml.Node) []int {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "scopes" && m.Content[i+1].Kind == yaml.SequenceNode {
			var lines []int
			for _, n := range m.Content[i+1].Content {
				lines = append(lines, n.Line)
			}
			return lines
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func parseSensitivity(s string) (Sensitivity, bool) {
	for v := SensitivityLow; v <= SensitivityCritical; v++ {
		if s == v.String() {
			return v, true
		}
	}
	return SensitivityUnspecified, false
}

// Name is where the catalogue was read from.
func (c *Catalogue) Name() string { return c.name }

// Minimum returns the least sensitivity scope is judged at, and false when
// the catalogue does not list scope.
func (c *Catalogue) Minimum(scope string) (Sensitivity, bool) {
	if s, ok := c.exact[scope]; ok {
		return s, true
	}
	for _, e := range c.prefixes {
		if strings.HasPrefix(scope, e.prefix) {
			return e.min, true
		}
	}
	return SensitivityUnspecified, false
}
