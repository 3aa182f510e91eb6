package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

// TestLowLabelledPaymentsTransferIsDecidedAsCriticalInTheEngine: the
// caller labels the task; the catalogue says what a scope is at least.
// The default set sends CRITICAL to a human, so the transfer is denied and
// the reason says at what it was judged, while the LOW scope beside it is
// granted at LOW.
func TestLowLabelledPaymentsTransferIsDecidedAsCriticalInTheEngine(t *testing.T) {
	t.Parallel()
	engine := defaultEngine(t)
	d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Scopes = []string{"papers:read", "payments:transfer"}
		r.Task.Sensitivity = policy.SensitivityLow
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.GrantedScopes, []string{"papers:read"}) || d.MaxTTL != time.Hour {
		t.Errorf("granted %v for %v, want papers:read for 1h (judged LOW)", d.GrantedScopes, d.MaxTTL)
	}
	want := `scope "payments:transfer": needs human approval (judged CRITICAL, the scope catalogue's minimum for it; the task was labelled LOW)`
	if !slices.Equal(d.Reasons, []string{want}) {
		t.Errorf("reasons = %q, want %q", d.Reasons, want)
	}
	if s := d.Scopes[1]; s.Sensitivity != policy.SensitivityCritical || s.CatalogueMinimum != policy.SensitivityCritical {
		t.Errorf("payments:transfer judged %v (minimum %v), want CRITICAL", s.Sensitivity, s.CatalogueMinimum)
	}
	// A prefix entry (payments:*) raises a LOW-labelled payment to HIGH:
	// granted, but for the HIGH cap.
	d, err = engine.Evaluate(context.Background(), request(func(r *policy.Request) { r.Scopes = []string{"payments:refund"} }))
	if err != nil || !d.Allow || d.MaxTTL != 5*time.Minute {
		t.Errorf("payments:refund labelled LOW = %v for %v (%v), want a grant capped at 5m (HIGH)", d.GrantedScopes, d.MaxTTL, err)
	}
}

// TestScopeOutsideTheCatalogueIsDenied: a scope the security team never
// listed is not granted, whatever the policies say (here: everything is
// permitted), and Cedar is not asked.
func TestScopeOutsideTheCatalogueIsDenied(t *testing.T) {
	t.Parallel()
	set, err := policy.Compile("test", []policy.File{
		{Name: "all.cedar", Path: "all.cedar", Content: []byte(`@id("all") permit (principal, action, resource);`)},
		{Name: "scopes.yaml", Path: "scopes.yaml", Content: []byte("scopes:\n  - {scope: tickets:read, min_sensitivity: LOW}\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := newEngine(set).Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Scopes = []string{"tickets:read", "admin:everything"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.GrantedScopes, []string{"tickets:read"}) {
		t.Errorf("granted %v, want tickets:read only", d.GrantedScopes)
	}
	if s := d.Scopes[1]; s.Granted || s.NarrowedBy != policy.NarrowedByCatalogue || len(s.Determining) != 0 {
		t.Errorf("admin:everything = %+v, want refused by the scope catalogue, no policy deciding", s)
	}
	if !slices.Equal(d.Reasons, []string{`scope "admin:everything" is not in the scope catalogue (scopes.yaml), so it is never granted`}) {
		t.Errorf("reasons = %q", d.Reasons)
	}
	// The default set ships a catalogue, so it denies unlisted scopes too.
	d, err = defaultEngine(t).Evaluate(context.Background(), request(func(r *policy.Request) { r.Scopes = []string{"crm:export"} }))
	if err != nil || d.Allow || d.Scopes[0].NarrowedBy != policy.NarrowedByCatalogue {
		t.Errorf("default set, crm:export = %+v (%v), want refused by the scope catalogue", d.Scopes, err)
	}
}

// TestMissingEntitlementsGrantNothing: leaving the delegator's
// entitlements out used to switch the entitlement check off. No list is
// now an empty one: nothing is granted, and the reason says why.
func TestMissingEntitlementsGrantNothing(t *testing.T) {
	t.Parallel()
	engine := newEngine(compile(t, `@id("all") permit (principal, action, resource);`))
	for _, tc := range []struct {
		name         string
		entitlements []string
	}{{"left out", nil}, {"empty", []string{}}} {
		r := request()
		r.Delegator.Entitlements = tc.entitlements
		d, err := engine.Evaluate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow || len(d.GrantedScopes) > 0 || d.Scopes[0].NarrowedBy != policy.NarrowedByEntitlements {
			t.Errorf("%s: decision %+v, want nothing granted, narrowed by entitlements", tc.name, d)
		}
		if !strings.Contains(d.Reasons[0], "the request gave none") {
			t.Errorf("%s: reason %q does not say no entitlements were given", tc.name, d.Reasons[0])
		}
	}
}

func TestCatalogueFaults(t *testing.T) {
	t.Parallel()
	const p = `permit (principal, action, resource);`
	tests := []struct {
		name, catalogue, detail string
		line                    int
	}{
		{"unknown sensitivity", "scopes:\n  - {scope: a:b, min_sensitivity: SEVERE}\n", "SEVERE", 2},
		{"star inside", "scopes:\n  - {scope: a:b, min_sensitivity: LOW}\n  - {scope: 'a*b', min_sensitivity: LOW}\n", "one `*`", 3},
		{"listed twice", "scopes:\n  - {scope: a:b, min_sensitivity: LOW}\n  - {scope: a:b, min_sensitivity: HIGH}\n", "twice", 3},
		{"space", "scopes:\n  - {scope: 'a b', min_sensitivity: LOW}\n", "without spaces", 2},
		{"reserved", "scopes:\n  - {scope: 'delegator:assert', min_sensitivity: LOW}\n", "reserved", 2},
		{"unknown key", "scopes:\n  - {scope: a:b, min_sensitivity: LOW, max: HIGH}\n", "max", 0},
		{"not yaml", "scopes: [", "", 0},
		{"empty file", "", "empty", 0},
		{"no scope", "scopes: []\n", "no scope", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Load(writeSet(t, map[string]string{"p.cedar": p, "scopes.yaml": tt.catalogue}))
			if !errors.Is(err, policy.ErrCatalogue) {
				t.Fatalf("Load error = %v, want ErrCatalogue", err)
			}
			var le *policy.LoadError
			if !errors.As(err, &le) || (tt.line != 0 && le.Line != tt.line) || !strings.HasSuffix(le.File, "scopes.yaml") {
				t.Errorf("Load error %v, want a LoadError at scopes.yaml:%d", err, tt.line)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("Load error %q does not name %q", err, tt.detail)
			}
		})
	}
	t.Run("two catalogues", func(t *testing.T) {
		t.Parallel()
		dir := writeSet(t, map[string]string{"p.cedar": p, "scopes.yaml": "scopes: [{scope: a, min_sensitivity: LOW}]\n"})
		if err := os.MkdirAll(filepath.Join(dir, "more"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "more", "scopes.yaml"), []byte("scopes: [{scope: a, min_sensitivity: LOW}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Load(dir); !errors.Is(err, policy.ErrCatalogue) {
			t.Errorf("Load error = %v, want ErrCatalogue", err)
		}
	})
}

func TestCatalogueMostSpecificEntryDecides(t *testing.T) {
	t.Parallel()
	c, err := policy.ParseCatalogue(policy.File{Name: "scopes.yaml", Path: "scopes.yaml", Content: []byte(`scopes:
  - {scope: "*", min_sensitivity: LOW}
  - {scope: "payments:*", min_sensitivity: HIGH}
  - {scope: "payments:read", min_sensitivity: MEDIUM}
  - {scope: "payments:transfer:*", min_sensitivity: CRITICAL}
`)})
	if err != nil {
		t.Fatal(err)
	}
	for scope, want := range map[string]policy.Sensitivity{
		"papers:read": policy.SensitivityLow, "payments:refund": policy.SensitivityHigh,
		"payments:read": policy.SensitivityMedium, "payments:transfer:eu": policy.SensitivityCritical,
	} {
		if got, ok := c.Minimum(scope); !ok || got != want {
			t.Errorf("Minimum(%q) = %v, %v; want %v", scope, got, ok, want)
		}
	}
}

// TestCatalogueReloadsLikeThePolicies: the catalogue is part of the set:
// an edit changes the version and takes effect on the next reload, and a
// bad edit keeps the last good catalogue (and policies) and is reported.
func TestCatalogueReloadsLikeThePolicies(t *testing.T) {
	t.Parallel()
	dir := writeSet(t, map[string]string{
		"p.cedar":     `@id("not-critical") permit (principal, action, resource) when { resource.sensitivity_level <= 3 };`,
		"scopes.yaml": "scopes:\n  - {scope: payments:transfer, min_sensitivity: LOW}\n",
	})
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := newEngine(set)
	reloader := policy.NewReloader(engine, dir, time.Hour)
	transfer := request(func(r *policy.Request) { r.Scopes = []string{"payments:transfer"} })
	allow := func() bool {
		t.Helper()
		d, err := engine.Evaluate(context.Background(), transfer)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	if !allow() {
		t.Fatal("payments:transfer at LOW minimum: want a grant")
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "scopes.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("scopes:\n  - {scope: payments:transfer, min_sensitivity: CRITICAL}\n")
	if changed, err := reloader.Reload(); !changed || err != nil {
		t.Fatalf("Reload of an edited catalogue = %v, %v; want a new set", changed, err)
	}
	critical := engine.Set().Version()
	if critical == set.Version() {
		t.Error("the version did not change with the catalogue")
	}
	if allow() {
		t.Error("payments:transfer after the catalogue made it CRITICAL: want a denial")
	}

	write("scopes:\n  - {scope: payments:transfer, min_sensitivity: TRIVIAL}\n")
	if _, err := reloader.Reload(); !errors.Is(err, policy.ErrCatalogue) {
		t.Fatalf("Reload of a bad catalogue: %v, want ErrCatalogue", err)
	}
	st := engine.Status()
	if st.Set.Version() != critical || !errors.Is(st.LastError, policy.ErrCatalogue) || !strings.Contains(st.LastError.Error(), "TRIVIAL") {
		t.Errorf("after a bad catalogue: version %s, last error %v; want %s kept and the error reported", st.Set.Version(), st.LastError, critical)
	}
	if allow() {
		t.Error("payments:transfer after a bad catalogue: want the last good one (CRITICAL) to deny")
	}
}
