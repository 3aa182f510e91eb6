package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// IDPFile is the JSON document of -idp-config: the identity providers
// whose tokens prove delegators. Its keys are the snake_case names of the
// fields of subjecttoken.Config, Provider and Mapping; durations are Go
// durations ("12h", "30s"). An unknown key is an error, so that a typo
// cannot silently drop a check.
//
//	{"providers": [{"issuer": "https://login.example.com",
//	                "audiences": ["jitid"],
//	                "algorithms": ["RS256"],
//	                "token_types": ["urn:ietf:params:oauth:token-type:id_token"],
//	                "max_age": "12h",
//	                "mapping": {"id_claim": "sub", "id_prefix": "user:",
//	                            "entitlements_claim": "groups",
//	                            "entitlements": {"finance": ["payments:transfer"]},
//	                            "attributes": {"age_verified": "age_verified"},
//	                            "mfa_methods": ["otp"], "mfa_acrs": [],
//	                            "mfa_attribute": "mfa", "zoneinfo_claim": "zoneinfo"}}],
//	 "leeway": "30s", "max_age": "12h"}
type IDPFile struct {
	Providers          []IDPProvider `json:"providers"`
	Leeway             Duration      `json:"leeway"`
	MaxAge             Duration      `json:"max_age"`
	KeyRefetchInterval Duration      `json:"key_refetch_interval"`
	KeySetMaxAge       Duration      `json:"key_set_max_age"`
}

// IDPProvider is one trusted provider of an IDPFile (subjecttoken.Provider).
type IDPProvider struct {
	Issuer     string     `json:"issuer"`
	Audiences  []string   `json:"audiences"`
	Algorithms []string   `json:"algorithms"`
	TokenTypes []string   `json:"token_types"`
	MaxAge     Duration   `json:"max_age"`
	Mapping    IDPMapping `json:"mapping"`
}

// IDPMapping is a provider's claim mapping (subjecttoken.Mapping).
type IDPMapping struct {
	IDClaim           string              `json:"id_claim"`
	IDPrefix          string              `json:"id_prefix"`
	EntitlementsClaim string              `json:"entitlements_claim"`
	Entitlements      map[string][]string `json:"entitlements"`
	Attributes        map[string]string   `json:"attributes"`
	MFAMethods        []string            `json:"mfa_methods"`
	MFAACRs           []string            `json:"mfa_acrs"`
	MFAAttribute      string              `json:"mfa_attribute"`
	ZoneinfoClaim     string              `json:"zoneinfo_claim"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string such as "12h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a duration string such as \"12h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// LoadIDPConfig reads an -idp-config file and returns the verifier
// configuration it describes, reporting every problem at once: unknown
// keys, values of the wrong type, and settings subjecttoken refuses.
func LoadIDPConfig(path string) (subjecttoken.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return subjecttoken.Config{}, fmt.Errorf("read: %w", err)
	}
	return ParseIDPConfig(b)
}

// ParseIDPConfig is LoadIDPConfig of the file's content.
func ParseIDPConfig(b []byte) (subjecttoken.Config, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return subjecttoken.Config{}, fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return subjecttoken.Config{}, errors.New("not JSON: more than one document")
	}
	// Checked against the types first, so that every unknown key and
	// every bad value is reported, not only the first one json meets.
	var errs []error
	checkShape("", raw, reflect.TypeFor[IDPFile](), &errs)
	if len(errs) > 0 {
		return subjecttoken.Config{}, errors.Join(errs...)
	}
	var f IDPFile
	strict := json.NewDecoder(bytes.NewReader(b))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&f); err != nil {
		return subjecttoken.Config{}, err
	}
	cfg := f.subjectTokenConfig()
	// New checks everything subjecttoken requires of a configuration (and
	// makes no request).
	if _, err := subjecttoken.New(cfg); err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // the joined problems, without the package prefix
		}
		return subjecttoken.Config{}, err
	}
	return cfg, nil
}

func (f IDPFile) subjectTokenConfig() subjecttoken.Config {
	cfg := subjecttoken.Config{
		Leeway:             time.Duration(f.Leeway),
		MaxAge:             time.Duration(f.MaxAge),
		KeyRefetchInterval: time.Duration(f.KeyRefetchInterval),
		KeySetMaxAge:       time.Duration(f.KeySetMaxAge),
	}
	for _, p := range f.Providers {
		sp := subjecttoken.Provider{
			Issuer:     p.Issuer,
			Audiences:  p.Audiences,
			Algorithms: p.Algorithms,
			MaxAge:     time.Duration(p.MaxAge),
			Mapping: subjecttoken.Mapping{
				IDClaim:           p.Mapping.IDClaim,
				IDPrefix:          p.Mapping.IDPrefix,
				EntitlementsClaim: p.Mapping.EntitlementsClaim,
				Entitlements:      p.Mapping.Entitlements,
				Attributes:        p.Mapping.Attributes,
				MFAMethods:        p.Mapping.MFAMethods,
				MFAACRs:           p.Mapping.MFAACRs,
				MFAAttribute:      p.Mapping.MFAAttribute,
				ZoneinfoClaim:     p.Mapping.ZoneinfoClaim,
			},
		}
		for _, t := range p.TokenTypes {
			sp.TokenTypes = append(sp.TokenTypes, subjecttoken.TokenType(t))
		}
		cfg.Providers = append(cfg.Providers, sp)
	}
	return cfg
}

var durationType = reflect.TypeFor[Duration]()

// checkShape appends to errs every place where v, a decoded JSON value,
// does not fit t: an unknown key, or a value of another type. null fits
// everything, as an absent key does.
func checkShape(path string, v any, t reflect.Type, errs *[]error) {
	if v == nil {
		return
	}
	at := func() string {
		if path == "" {
			return "the document"
		}
		return path
	}
	bad := func(want string) {
		*errs = append(*errs, fmt.Errorf("%s: want %s, got %s", at(), want, jsonKind(v)))
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if !ok {
			bad("a duration string such as \"12h\"")
			return
		}
		if _, err := time.ParseDuration(s); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", at(), err))
		}
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			bad("a string")
		}
	case t.Kind() == reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			bad("a list")
			return
		}
		for i, item := range items {
			checkShape(fmt.Sprintf("%s[%d]", path, i), item, t.Elem(), errs)
		}
	case t.Kind() == reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			bad("an object")
			return
		}
		for _, k := range sortedKeys(m) {
			checkShape(fmt.Sprintf("%s[%q]", path, k), m[k], t.Elem(), errs)
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			bad("an object")
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			fields[name] = t.Field(i).Type
		}
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			child := k
			if path != "" {
				child = path + "." + k
			}
			if !known {
				*errs = append(*errs, fmt.Errorf("%s: unknown key (known: %s)", child, strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			checkShape(child, m[k], ft, errs)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
