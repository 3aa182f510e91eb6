package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/policies"
)

func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSchemaValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		src    string
		want   error
		line   int
		policy string
		// detail is a word the message must hold for an author to find the
		// fault; the sentinel is what the test relies on.
		detail string
	}{
		{"unknown task attribute", "@id(\"p\")\npermit (principal, action, resource)\nwhen { resource.sensitivty == \"LOW\" };\n",
			policy.ErrValidation, 1, "p", "sensitivty"},
		{"unknown delegator attribute key", "permit (principal, action, resource);\n\n@id(\"q\")\npermit (principal, action, resource)\nwhen { context.delegator.attributes has age_verifed };\n",
			policy.ErrValidation, 3, "q", "age_verifed"},
		{"type error", "@id(\"p\")\nforbid (principal, action, resource)\nwhen { context.hour == \"8\" };\n",
			policy.ErrValidation, 1, "p", "Long"},
		{"optional without has", "@id(\"p\")\nforbid (principal, action, resource)\nwhen { context.local.hour < 8 };\n",
			policy.ErrValidation, 1, "p", "has"},
		{"bad duration literal", "@id(\"p\")\nforbid (principal, action, resource)\nwhen { context.ttl > duration(\"15x\") };\n",
			policy.ErrValidation, 1, "p", "15x"},
		{"unknown entity type", "@id(\"p\")\npermit (principal == Jitid::User::\"alice\", action, resource);\n",
			policy.ErrValidation, 1, "p", "Jitid::User"},
		{"bad max_ttl annotation", "@id(\"p\")\n@max_ttl(\"1 hour\")\npermit (principal, action, resource);\n",
			policy.ErrBadAnnotation, 1, "p", "max_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeSet(t, map[string]string{"test.cedar": tt.src})
			_, err := policy.Load(dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load error = %v, want %v", err, tt.want)
			}
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load error = %T, want *LoadError", err)
			}
			if le.File != filepath.Join(dir, "test.cedar") || le.Line != tt.line || le.Policy != tt.policy {
				t.Errorf("LoadError at %s:%d policy %q, want %s:%d policy %q", le.File, le.Line, le.Policy, "test.cedar", tt.line, tt.policy)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not name %q", err, tt.detail)
			}
		})
	}
}

func TestCompileReportsEveryFault(t *testing.T) {
	t.Parallel()
	dir := writeSet(t, map[string]string{
		"a.cedar": "@id(\"x\")\npermit (principal, action, resource) when { resource.nope };\n",
		"b.cedar": "@id(\"y\")\n@profile(\"ALL\")\npermit (principal, action, resource);\n@id(\"z\") permit (principal, action, resource);\n@id(\"z\") permit (principal, action, resource);\n",
	})
	_, err := policy.Load(dir)
	for _, want := range []error{policy.ErrValidation, policy.ErrBadAnnotation, policy.ErrDuplicateID} {
		if !errors.Is(err, want) {
			t.Errorf("Load error = %v, want it to include %v", err, want)
		}
	}
}

func TestCustomSchema(t *testing.T) {
	t.Parallel()
	base := string(policies.Schema())
	withCostCenter := strings.Replace(base, `"team"?: String,`, `"team"?: String, "cost_center"?: String,`, 1)
	policySrc := "permit (principal, action, resource)\nwhen { principal.attributes has cost_center && principal.attributes.cost_center == \"42\" };\n"

	tests := []struct {
		name   string
		schema string
		want   error
	}{
		{"declared attribute key", withCostCenter, nil},
		{"builtin schema lacks the key", "", policy.ErrValidation},
		{"required attribute key", strings.Replace(base, `"team"?: String,`, `"cost_center": String,`, 1), policy.ErrSchema},
		{"context field jitid never sends", strings.Replace(withCostCenter, `"scope": String,`, `"scope": String, "risk": Long,`, 1), policy.ErrSchema},
		{"optional made required", strings.Replace(withCostCenter, `"local"?: LocalTime,`, `"local": LocalTime,`, 1), policy.ErrSchema},
		{"type changed", strings.Replace(withCostCenter, `"hour": Long,`, `"hour": String,`, 1), policy.ErrSchema},
		{"not a schema", "entity {", policy.ErrSchema},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"p.cedar": policySrc}
			if tt.schema != "" {
				files["mine.cedarschema"] = tt.schema
			}
			set, err := policy.Load(writeSet(t, files))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Load error = %v, want %v", err, tt.want)
			}
			if err == nil && !strings.HasSuffix(set.Schema(), "mine.cedarschema") {
				t.Errorf("Schema() = %q, want the set's own", set.Schema())
			}
		})
	}
}

func TestTwoSchemas(t *testing.T) {
	t.Parallel()
	s := string(policies.Schema())
	_, err := policy.Load(writeSet(t, map[string]string{"p.cedar": "permit (principal, action, resource);", "a.cedarschema": s, "b.cedarschema": s}))
	if !errors.Is(err, policy.ErrSchema) {
		t.Errorf("Load error = %v, want ErrSchema", err)
	}
}
