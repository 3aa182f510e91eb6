package reqrules

import (
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Identifier returns nil when s may name something (an agent, delegator,
// task, platform, scope or attribute key), an error saying why not
// otherwise. It refuses:
//   - invalid UTF-8;
//   - control and format characters (Unicode Cc and Cf: newline, U+200B
//     ZERO WIDTH SPACE, U+202E RIGHT-TO-LEFT OVERRIDE, U+FEFF, ...), which
//     make two different ids print alike or forge a log line;
//   - any string that is not in Unicode NFC. Identifiers are refused rather
//     than normalised, so that the issuer, policy and audit all see the
//     bytes the caller sent, and two spellings of one name can never be
//     two principals: the caller normalises (norm.NFC) before sending.
func Identifier(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("holds the control or invisible character %U", r)
		}
	}
	if !norm.NFC.IsNormalString(s) {
		return fmt.Errorf("is not in Unicode NFC")
	}
	return nil
}

func identifierRule(field, s string) []Violation {
	if err := Identifier(s); err != nil {
		return []Violation{{field, err.Error()}}
	}
	return nil
}

func scopesRules(field string, scopes []string) []Violation {
	var out []Violation
	for i, s := range scopes {
		out = append(out, identifierRule(fmt.Sprintf("%s[%d]", field, i), s)...)
	}
	return out
}

// attributeKeysRules checks the keys of the map field attrs in sorted
// order, so that the violations come out the same on every call.
func attributeKeysRules(field string, attrs map[string]string) []Violation {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Violation
	for _, k := range keys {
		if err := Identifier(k); err != nil {
			// The key itself may be what is wrong: it is not quoted.
			out = append(out, Violation{field, "has a key that " + err.Error()})
		}
	}
	return out
}

func agentIdentifiers(field string, a *identityv1.Agent) []Violation {
	if a == nil {
		return nil
	}
	out := identifierRule(field+".id", a.GetId())
	out = append(out, identifierRule(field+".platform", a.GetPlatform())...)
	return append(out, attributeKeysRules(field+".attributes", a.GetAttributes())...)
}

func delegatorIdentifiers(field string, d *identityv1.Delegator) []Violation {
	if d == nil {
		return nil
	}
	join := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	out := identifierRule(join("id"), d.GetId())
	return append(out, attributeKeysRules(join("attributes"), d.GetAttributes())...)
}

func taskIdentifiers(field string, t *identityv1.Task) []Violation {
	if t == nil {
		return nil
	}
	return identifierRule(field+".id", t.GetId())
}
