package redisstore

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// wrapper is what every script's wrapper has: KEYS and ARGV built from its
// fields.
type wrapper interface {
	keysArgs() ([]string, []any)
}

// wrappers pairs every script with a new, empty wrapper of it.
func wrappers() []struct {
	script redisscripts.Script
	call   wrapper
} {
	return []struct {
		script redisscripts.Script
		call   wrapper
	}{
		{redisscripts.Issue, &issueCall{}},
		{redisscripts.Use, &useCall{}},
		{redisscripts.Mark, &markCall{}},
		{redisscripts.Revoke, &revokeCall{}},
		{redisscripts.Complete, &completeCall{}},
		{redisscripts.Sweep, &sweepCall{}},
		{redisscripts.Quota, &quotaCall{}},
	}
}

// TestEveryScriptHasAWrapper: a script added without a wrapper here would
// escape the contract test.
func TestEveryScriptHasAWrapper(t *testing.T) {
	t.Parallel()
	have := map[string]bool{}
	for _, w := range wrappers() {
		have[w.script.Name] = true
	}
	for _, s := range redisscripts.All() {
		if !have[s.Name] {
			t.Errorf("%s has no wrapper in the contract test", s.Name)
		}
	}
}

// TestWrappersBuildKeysAndArgsInTheScriptsOrder fills every field of each
// wrapper with a value naming it, builds KEYS and ARGV, and compares them
// with the order the script's header states. A field moved, added or
// renamed on one side only, a header that names a field the wrapper lacks,
// or a wrapper field the header does not name, fails here.
func TestWrappersBuildKeysAndArgsInTheScriptsOrder(t *testing.T) {
	t.Parallel()
	for _, w := range wrappers() {
		for _, optional := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/optional=%v", w.script.Name, optional), func(t *testing.T) {
				v := reflect.ValueOf(w.call).Elem()
				v.SetZero()
				n := int64(1000)
				fill(v, "", optional, &n)
				keys, args := w.call.keysArgs()
				used := map[string]bool{}
				wantKeys := expand(t, w.script.Keys, v, "key", optional, used)
				wantArgs := expand(t, w.script.Args, v, "arg", optional, used)
				if diff := cmp.Diff(wantKeys, keys); diff != "" {
					t.Errorf("KEYS (-header +wrapper):\n%s", diff)
				}
				gotArgs := make([]string, len(args))
				for i, a := range args {
					gotArgs[i] = str(a)
				}
				if diff := cmp.Diff(wantArgs, gotArgs); diff != "" {
					t.Errorf("ARGV (-header +wrapper):\n%s", diff)
				}
				for _, f := range taggedFields(v.Type()) {
					if !used[f] {
						t.Errorf("wrapper field %s is not in the header", f)
					}
				}
			})
		}
	}
}

// TestScriptsIndexOnlyTheirStatedPositions: a script reading KEYS[n] or
// ARGV[n] beyond the positions its header names reads something the
// wrapper does not send there.
func TestScriptsIndexOnlyTheirStatedPositions(t *testing.T) {
	t.Parallel()
	index := regexp.MustCompile(`\b(KEYS|ARGV)\[(\d+)\]`)
	for _, s := range redisscripts.All() {
		stated := map[string]int{"KEYS": positions(s.Keys), "ARGV": positions(s.Args)}
		for _, m := range index.FindAllStringSubmatch(s.Source, -1) {
			if n, _ := strconv.Atoi(m[2]); n < 1 || n > stated[m[1]] {
				t.Errorf("%s reads %s, its header names %d positions", s.Name, m[0], stated[m[1]])
			}
		}
	}
}

var headerToken = regexp.MustCompile(`\[|\]|\{|\}\.\.\.|[a-z_]+(?:\.\.\.)?`)

// positions counts the single positions a header names before its first
// repeated or variadic part.
func positions(spec string) int {
	n := 0
	for _, tok := range headerToken.FindAllString(spec, -1) {
		if tok == "{" || strings.HasSuffix(tok, "...") {
			break
		}
		if tok != "[" && tok != "]" {
			n++
		}
	}
	return n
}

// expand returns the values a header spec lists, read from the wrapper v:
// "name" one field, "[...]" fields given only with optional, "{...}..."
// the fields of each item of the items field, "name..." each element of a
// slice field.
func expand(t *testing.T, spec string, v reflect.Value, section string, optional bool, used map[string]bool) []string {
	t.Helper()
	tokens := headerToken.FindAllString(spec, -1)
	if strings.Join(tokens, "") != strings.Join(strings.Fields(spec), "") {
		t.Fatalf("header %q: not of names, [...], {...}... and name...", spec)
	}
	var out, group []string
	inOptional, inGroup := false, false
	for _, tok := range tokens {
		switch {
		case tok == "[":
			inOptional = true
		case tok == "]":
			inOptional = false
		case tok == "{":
			inGroup, group = true, nil
		case tok == "}...":
			inGroup = false
			items := itemsField(t, v)
			used["items"] = true
			for i := range items.Len() {
				for _, name := range group {
					out = append(out, str(field(t, items.Index(i), section, name, nil).Interface()))
				}
			}
		case inGroup:
			group = append(group, tok)
		case strings.HasSuffix(tok, "..."):
			f := field(t, v, section, tok, used)
			for i := range f.Len() {
				out = append(out, str(f.Index(i).Interface()))
			}
		case inOptional && !optional:
			field(t, v, section, tok, used)
		default:
			out = append(out, str(field(t, v, section, tok, used).Interface()))
		}
	}
	return out
}

// field returns v's field tagged section:"name".
func field(t *testing.T, v reflect.Value, section, name string, used map[string]bool) reflect.Value {
	t.Helper()
	for i := range v.NumField() {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get(section), ",")
		if tag == name {
			if used != nil {
				used[v.Type().Field(i).Name] = true
			}
			return v.Field(i)
		}
	}
	t.Fatalf("the header names %s %q; %s has no field tagged so", section, name, v.Type())
	return reflect.Value{}
}

func itemsField(t *testing.T, v reflect.Value) reflect.Value {
	t.Helper()
	for i := range v.NumField() {
		if _, ok := v.Type().Field(i).Tag.Lookup("items"); ok {
			return v.Field(i)
		}
	}
	t.Fatalf("the header has a {...}... part; %s has no items field", v.Type())
	return reflect.Value{}
}

// taggedFields returns the names of a wrapper's fields that go to KEYS or
// ARGV ("items" for its items field).
func taggedFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if _, ok := f.Tag.Lookup("items"); ok {
			out = append(out, "items")
		} else if f.Tag.Get("key") != "" || f.Tag.Get("arg") != "" {
			out = append(out, f.Name)
		}
	}
	return out
}

// fill sets every tagged field of v to a value naming it (strings and
// bytes) or to a number of its own, two elements in slices, optional
// fields only when optional.
func fill(v reflect.Value, suffix string, optional bool, n *int64) {
	for i := range v.NumField() {
		sf, f := v.Type().Field(i), v.Field(i)
		if _, ok := sf.Tag.Lookup("items"); ok {
			f.Set(reflect.MakeSlice(f.Type(), 2, 2))
			for j := range 2 {
				fill(f.Index(j), "#"+strconv.Itoa(j), optional, n)
			}
			continue
		}
		tag := sf.Tag.Get("key") + sf.Tag.Get("arg")
		name, opt, _ := strings.Cut(tag, ",")
		if name == "" || (opt == "optional" && !optional) {
			continue
		}
		name += suffix
		switch f.Kind() {
		case reflect.String:
			f.SetString(name)
		case reflect.Int64:
			*n++
			f.SetInt(*n)
		case reflect.Slice:
			switch f.Type().Elem().Kind() {
			case reflect.Uint8:
				f.SetBytes([]byte(name))
			case reflect.String:
				f.Set(reflect.ValueOf([]string{name + ".0", name + ".1"}))
			case reflect.Interface:
				f.Set(reflect.ValueOf([]any{name + ".0", name + ".1"}))
			default:
				panic("fill: slice of " + f.Type().Elem().String())
			}
		default:
			panic("fill: " + f.Type().String())
		}
	}
}

func str(v any) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return fmt.Sprint(v)
}
