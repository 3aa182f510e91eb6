package subjecttoken

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apply maps verified claims to a Result.
func (m Mapping) apply(claims map[string]any) (*Result, error) {
	res := &Result{Attributes: map[string]string{}}
	id, err := stringClaim(claims, m.IDClaim, true)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(id) == "" {
		return nil, fmt.Errorf("%w: %s is empty", ErrInvalidClaim, m.IDClaim)
	}
	res.DelegatorID = m.IDPrefix + id
	if res.Subject, err = stringClaim(claims, "sub", false); err != nil {
		return nil, err
	}
	if res.AuthenticatedAt, err = timeClaim(claims, "auth_time", true); err != nil {
		return nil, err
	}

	if m.EntitlementsClaim != "" {
		values, err := stringsClaim(claims, m.EntitlementsClaim)
		if err != nil {
			return nil, err
		}
		if values == nil {
			// An absent list must not read as "no limit".
			return nil, fmt.Errorf("%w: %s", ErrClaimMissing, m.EntitlementsClaim)
		}
		res.Entitlements = []string{}
		for _, v := range values {
			if m.Entitlements == nil {
				res.Entitlements = append(res.Entitlements, v)
				continue
			}
			res.Entitlements = append(res.Entitlements, m.Entitlements[v]...)
		}
		slices.Sort(res.Entitlements)
		res.Entitlements = slices.Compact(res.Entitlements)
	}

	for name, claim := range m.Attributes {
		v, ok, err := attributeValue(claims, claim)
		if err != nil {
			return nil, err
		}
		if ok {
			res.Attributes[name] = v
		}
	}

	if res.AMR, err = stringsClaim(claims, "amr"); err != nil {
		return nil, err
	}
	if res.ACR, err = stringClaim(claims, "acr", false); err != nil {
		return nil, err
	}
	res.MFA = slices.ContainsFunc(res.AMR, func(a string) bool { return slices.Contains(m.MFAMethods, a) }) ||
		(res.ACR != "" && slices.Contains(m.MFAACRs, res.ACR))
	if m.MFAAttribute != "" {
		res.Attributes[m.MFAAttribute] = strconv.FormatBool(res.MFA)
	}

	if res.TimeZone, err = stringClaim(claims, m.ZoneinfoClaim, false); err != nil {
		return nil, err
	}
	if res.TimeZone != "" {
		if err := checkTimeZone(res.TimeZone); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidClaim, m.ZoneinfoClaim, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
		}
	}
	return res, nil
}

// checkTimeZone accepts IANA zone names only: time.LoadLocation also takes
// "Local" (this host's zone), which is no name a provider can mean.
func checkTimeZone(name string) error {
	if name == "Local" {
		return fmt.Errorf("%q is not an IANA time zone name", name)
	}
	_, err := time.LoadLocation(name)
	return err
}

// attributeValue reads a scalar claim as an attribute value.
func attributeValue(claims map[string]any, claim string) (string, bool, error) {
	raw, ok := claims[claim]
	if !ok || raw == nil {
		return "", false, nil
	}
	switch v := raw.(type) {
	case string:
		return v, true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true, nil
	}
	return "", false, fmt.Errorf("%w: %s is not a string, boolean or number", ErrInvalidClaim, claim)
}

func stringClaim(claims map[string]any, name string, required bool) (string, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		if required {
			return "", fmt.Errorf("%w: %s", ErrClaimMissing, name)
		}
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("%w: %s is not a string", ErrInvalidClaim, name)
	}
	return s, nil
}

// stringsClaim reads a list of strings, also given as one space-separated
// string (as scope is); nil means the claim is absent.
func stringsClaim(claims map[string]any, name string) ([]string, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		return nil, nil
	}
	switch v := raw.(type) {
	case string:
		return append([]string{}, strings.Fields(v)...), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds a value that is not a string", ErrInvalidClaim, name)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s is not a string or a list of strings", ErrInvalidClaim, name)
}

// timeClaim reads a NumericDate (RFC 7519 §2); the zero time means absent.
func timeClaim(claims map[string]any, name string, required bool) (time.Time, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		if required {
			return time.Time{}, fmt.Errorf("%w: %s", ErrClaimMissing, name)
		}
		return time.Time{}, nil
	}
	f, ok := raw.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%w: %s is not a date", ErrInvalidClaim, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}
