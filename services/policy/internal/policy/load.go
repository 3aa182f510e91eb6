package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/jitid/jitid/services/policy/policies"
)

// File is one .cedar document of a policy set.
type File struct {
	// Name identifies the file inside the set (relative to the source
	// directory); it enters the version hash and default policy ids, so that
	// both survive moving the directory.
	Name string
	// Path is where the file is, for error messages.
	Path    string
	Content []byte
}

// ReadPath reads the policy files at p: p itself when it is a file, or every
// *.cedar and *.cedarschema file and the scopes.yaml catalogue below it
// (sorted, hidden entries skipped) when it is a directory.
func ReadPath(p string) ([]File, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if !info.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRead, err)
		}
		return []File{{Name: filepath.Base(p), Path: p, Content: b}}, nil
	}
	files, err := ReadFS(os.DirFS(p))
	for i := range files {
		files[i].Path = filepath.Join(p, filepath.FromSlash(files[i].Name))
	}
	return files, err
}

// ReadFS reads every *.cedar and *.cedarschema file and every file named
// CatalogueName of fsys, sorted by name. Hidden files and
// directories are skipped: editors and Kubernetes ConfigMaps (..data) keep
// their bookkeeping there.
func ReadFS(fsys fs.FS) ([]File, error) {
	var files []File
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := path.Base(name)
		if name != "." && strings.HasPrefix(base, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !(strings.HasSuffix(base, ".cedar") || strings.HasSuffix(base, schemaSuffix) || base == CatalogueName) {
			return nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files = append(files, File{Name: name, Path: name, Content: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// Version returns the content hash of files: hex SHA-256 over each file's
// name and content, in name order, so that it does not depend on the order
// the files were listed in.
func Version(files []File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	var n [8]byte
	for _, f := range sorted {
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Name)))
		h.Write(n[:])
		h.Write([]byte(f.Name))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Content)))
		h.Write(n[:])
		h.Write(f.Content)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Load reads and compiles the policy set at p (a file or a directory).
func Load(p string) (*Set, error) {
	files, err := ReadPath(p)
	if err != nil {
		return nil, err
	}
	return Compile(p, files)
}

// LoadFS reads and compiles the policy set in fsys; source names it in
// GetPolicySet and logs.
func LoadFS(fsys fs.FS, source string) (*Set, error) {
	files, err := ReadFS(fsys)
	if err != nil {
		return nil, err
	}
	return Compile(source, files)
}

// Annotation names jitid gives meaning to.
const (
	annID         = "id"
	annReason     = "reason"
	annMaxTTL     = "max_ttl"
	annProfile    = "profile"
	annObligation = "obligation"
	annMaxUses    = "max_uses"
)

// maxIDBytes bounds @id: ids travel in every decision and audit record.
const maxIDBytes = 128

var parsePos = regexp.MustCompile(`<input>:(\d+):(\d+)`)

const schemaSuffix = ".cedarschema"

// Compile parses files into a Set, validates every policy against the
// schema (the set's one .cedarschema file, else the built-in one) and checks
// the jitid annotations. It is the only place Cedar text is parsed:
// evaluation works on the result. The error joins one *LoadError per fault
// (file, line, column and policy, wrapping one of the sentinels); use
// errors.As and errors.Is on it.
func Compile(source string, files []File) (*Set, error) {
	s := &Set{
		cedar:   cedar.NewPolicySet(),
		meta:    map[cedar.PolicyID]*policyMeta{},
		version: Version(files),
		source:  source,
	}
	var sch *Schema
	var policyFiles []File
	for _, f := range files {
		if path.Base(f.Name) == CatalogueName {
			if s.catalogue != nil {
				return nil, &LoadError{File: f.Path, Err: fmt.Errorf("%w: a set has at most one %s; %s is the other", ErrCatalogue, CatalogueName, s.catalogue.Name())}
			}
			c, err := ParseCatalogue(f)
			if err != nil {
				return nil, err
			}
			s.catalogue = c
			continue
		}
		if !strings.HasSuffix(f.Name, schemaSuffix) {
			policyFiles = append(policyFiles, f)
			continue
		}
		if sch != nil {
			return nil, &LoadError{File: f.Path, Err: fmt.Errorf("%w: a set has at most one schema; %s is the other", ErrSchema, sch.Name())}
		}
		var err error
		if sch, err = ParseSchema(f); err != nil {
			return nil, err
		}
	}
	if sch == nil {
		var err error
		sch, err = ParseSchema(File{Name: policies.SchemaName, Path: "builtin:" + policies.SchemaName, Content: policies.Schema()})
		if err != nil {
			return nil, err
		}
	}
	s.schema = sch.Name()
	// Every fault of the set is collected, not just the first, so that an
	// author fixes them in one round.
	var errs []error
	for _, f := range policyFiles {
		list, err := cedar.NewPolicyListFromBytes(f.Path, f.Content)
		if err != nil {
			errs = append(errs, parseError(f.Path, err))
			continue
		}
		for i, p := range list {
			m, err := newPolicyMeta(f, i, p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			msgs, err := sch.validatePolicy(p)
			if err != nil {
				errs = append(errs, &LoadError{File: f.Path, Line: m.pos.Line, Column: m.pos.Column, Policy: m.id, Err: fmt.Errorf("%w: %w", ErrSchema, err)})
				continue
			}
			if len(msgs) > 0 {
				errs = append(errs, &LoadError{File: f.Path, Line: m.pos.Line, Column: m.pos.Column, Policy: m.id,
					Err: fmt.Errorf("%w: %s", ErrValidation, strings.Join(msgs, "; "))})
				continue
			}
			m.policy = p
			if prev, dup := s.meta[cedar.PolicyID(m.id)]; dup {
				errs = append(errs, &LoadError{File: f.Path, Line: m.pos.Line, Column: m.pos.Column, Policy: m.id,
					Err: fmt.Errorf("%w: also at %s:%d", ErrDuplicateID, prev.pos.Filename, prev.pos.Line)})
				continue
			}
			s.meta[cedar.PolicyID(m.id)] = m
			s.cedar.Add(cedar.PolicyID(m.id), p)
			s.ids = append(s.ids, m.id)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(s.ids) == 0 {
		return nil, fmt.Errorf("%s: %w", source, ErrEmptySet)
	}
	s.plan = newPlan(s.ids, s.meta)
	return s, nil
}

// parseError turns cedar-go's error, which locates the fault in "<input>",
// into a LoadError that names the file.
func parseError(file string, err error) error {
	le := &LoadError{File: file}
	msg := strings.TrimPrefix(err.Error(), "parser error: ")
	if m := parsePos.FindStringSubmatch(msg); m != nil {
		le.Line, _ = strconv.Atoi(m[1])
		le.Column, _ = strconv.Atoi(m[2])
		// "parse error at <input>:3:24 \",\": exact got action want ," and
		// "<input>:5:2: literal not terminated" are the two shapes.
		msg = strings.TrimPrefix(msg, "parse error at ")
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, m[0]), ":")
		msg = strings.TrimSpace(msg)
		if strings.HasPrefix(msg, `"`) {
			msg = "near " + msg
		}
	}
	le.Err = fmt.Errorf("%w: %s", ErrParse, msg)
	return le
}

// policyMeta is what jitid reads from one policy's annotations, checked at
// load so that evaluation never meets a bad value.
type policyMeta struct {
	id          string
	policy      *cedar.Policy
	effect      cedar.Effect
	pos         cedar.Position
	reason      string
	maxTTL      time.Duration // zero: no cap
	profile     Profile       // unspecified: no say
	obligations []string
	maxUses     int32 // zero: no limit
}

// maxMaxUses bounds @max_uses: a larger limit is no limit worth counting.
const maxMaxUses = 1_000_000

func newPolicyMeta(f File, index int, p *cedar.Policy) (*policyMeta, error) {
	ann := p.Annotations()
	m := &policyMeta{
		id:     fmt.Sprintf("%s:%d", f.Name, index),
		effect: p.Effect(),
		pos:    p.Position(),
	}
	bad := func(key, format string, args ...any) error {
		return &LoadError{File: f.Path, Line: m.pos.Line, Column: m.pos.Column, Policy: m.id,
			Err: fmt.Errorf("%w: @%s: %s", ErrBadAnnotation, key, fmt.Sprintf(format, args...))}
	}
	if v, ok := ann[annID]; ok {
		id := strings.TrimSpace(string(v))
		if id == "" || len(id) > maxIDBytes {
			return nil, bad(annID, "must be 1 to %d bytes", maxIDBytes)
		}
		m.id = id
	}
	if v, ok := ann[annReason]; ok {
		if m.reason = strings.TrimSpace(string(v)); m.reason == "" {
			return nil, bad(annReason, "is empty")
		}
	}
	// Caps, profiles and obligations say what a grant comes with; a forbid
	// grants nothing, so on a forbid they would be silently ignored.
	for _, key := range []string{annMaxTTL, annProfile, annObligation, annMaxUses} {
		if _, ok := ann[types.AnnotationKey(key)]; ok && m.effect == cedar.Forbid {
			return nil, bad(key, "only permit policies can carry it")
		}
	}
	if v, ok := ann[annMaxTTL]; ok {
		d, err := time.ParseDuration(string(v))
		if err != nil || d <= 0 {
			return nil, bad(annMaxTTL, "%q is not a positive Go duration such as \"15m\"", string(v))
		}
		m.maxTTL = d
	}
	if v, ok := ann[annMaxUses]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(string(v)))
		if err != nil || n < 1 || n > maxMaxUses {
			return nil, bad(annMaxUses, "%q is not a whole number from 1 to %d", string(v), maxMaxUses)
		}
		m.maxUses = int32(n) //nolint:gosec // G109: n is within 1..maxMaxUses, checked above
	}
	if v, ok := ann[annProfile]; ok {
		switch string(v) {
		case "MINIMAL":
			m.profile = ProfileMinimal
		case "FULL":
			m.profile = ProfileFull
		default:
			return nil, bad(annProfile, "%q is neither \"MINIMAL\" nor \"FULL\"", string(v))
		}
	}
	if v, ok := ann[annObligation]; ok {
		for o := range strings.SplitSeq(string(v), ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				return nil, bad(annObligation, "has an empty entry")
			}
			m.obligations = append(m.obligations, o)
		}
	}
	return m, nil
}

// Set is a compiled, immutable policy set. It is safe for concurrent use.
type Set struct {
	cedar   *cedar.PolicySet
	plan    *plan
	meta    map[cedar.PolicyID]*policyMeta
	ids     []string // in file order
	version string
	source  string
	schema  string
	// catalogue is the set's scope catalogue; nil when the set has none.
	catalogue *Catalogue

	explainOnce sync.Once
	explainers  map[string]*explainer
}

// Schema names the schema the set was validated against.
func (s *Set) Schema() string { return s.schema }

// Catalogue returns the set's scope catalogue, nil when it has none.
func (s *Set) Catalogue() *Catalogue { return s.catalogue }

// Version returns the content hash of the set (see the Version function).
func (s *Set) Version() string { return s.version }

// Source returns where the set was loaded from.
func (s *Set) Source() string { return s.source }

// PolicyIDs returns the ids of the set's policies, in file order.
func (s *Set) PolicyIDs() []string { return slices.Clone(s.ids) }

// Info describes one policy of a set, for explanations.
type Info struct {
	ID     string
	Forbid bool
	File   string
	Line   int
	Column int
	Reason string
}

// Policy returns the description of the policy with id.
func (s *Set) Policy(id string) (Info, bool) {
	m, ok := s.meta[cedar.PolicyID(id)]
	if !ok {
		return Info{ID: id}, false
	}
	return Info{ID: m.id, Forbid: m.effect == cedar.Forbid, File: m.pos.Filename, Line: m.pos.Line, Column: m.pos.Column, Reason: m.reason}, true
}
