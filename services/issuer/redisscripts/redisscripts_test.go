package redisscripts

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// TestScriptsNameNoFieldInALiteral: a script that wrote a hash field, key
// part or entry field as a string literal would not follow a change of
// the Go constant; every name goes through the tables of names.go.
func TestScriptsNameNoFieldInALiteral(t *testing.T) {
	t.Parallel()
	literal := regexp.MustCompile(`'([^']*)'|"([^"]*)"`)
	nameLike := regexp.MustCompile(`^[a-z_]+:?$`)
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		for n, line := range strings.Split(string(src), "\n") {
			code, _, _ := strings.Cut(line, "--")
			for _, m := range literal.FindAllStringSubmatch(code, -1) {
				if lit := m[1] + m[2]; nameLike.MatchString(lit) {
					t.Errorf("%s:%d: literal %q: use a name of names.go", path, n+1, lit)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEveryFileIsAScriptOrALibrary: a .lua file that no script loads
// would be dead code that looks alive.
func TestEveryFileIsAScriptOrALibrary(t *testing.T) {
	t.Parallel()
	used := map[string]bool{"lib/marked.lua": true, "lib/revoke.lua": true}
	for _, s := range All() {
		used[s.Name] = true
	}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !used[path] {
			t.Errorf("%s is loaded by no script", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUndefinedNameFailsTheLoad: a script naming a field that names.go
// does not define must not reach Redis, where it would be nil at run time.
func TestUndefinedNameFailsTheLoad(t *testing.T) {
	t.Parallel()
	if _, err := writeNames("redis.call('HGET', KEYS[1], F.NoSuchField)"); err == nil {
		t.Error("writeNames accepted an undefined field")
	}
	got, err := writeNames("redis.call('HGET', KEYS[1], F.Written)")
	if want := "redis.call('HGET', KEYS[1], '" + FieldWritten + "')"; err != nil || got != want {
		t.Errorf("writeNames() = %q, %v; want %q", got, err, want)
	}
}

// TestNamesAreDistinctAndQuotable: two fields of one table with the same
// value would overwrite each other, and a quote would break the Lua.
func TestNamesAreDistinctAndQuotable(t *testing.T) {
	t.Parallel()
	for table, m := range names {
		seen := map[string]string{}
		for name, v := range m {
			if v == "" || strings.ContainsAny(v, `'"\`+"\n") {
				t.Errorf("%s.%s = %q: empty or not quotable", table, name, v)
			}
			if other, ok := seen[v]; ok {
				t.Errorf("%s.%s and %s.%s are both %q", table, name, table, other, v)
			}
			seen[v] = name
		}
	}
}

// TestEveryScriptStatesItsContract: the wrappers are checked against the
// KEYS and ARGV lines, so a script must have them.
func TestEveryScriptStatesItsContract(t *testing.T) {
	t.Parallel()
	for _, s := range All() {
		if s.Keys == "" || s.Args == "" || s.Source == "" {
			t.Errorf("%s: KEYS %q, ARGV %q, %d bytes of source", s.Name, s.Keys, s.Args, len(s.Source))
		}
		if nameRef.MatchString(s.Source) {
			t.Errorf("%s: a name left unwritten: %q", s.Name, nameRef.FindString(s.Source))
		}
	}
}
