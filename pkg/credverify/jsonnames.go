package credverify

import (
	"bytes"
	"encoding/json"
)

// A JSON object that names a member twice is read differently by different
// parsers (encoding/json keeps the last, others the first, or refuse it).
// RFC 7515 §4 and RFC 7519 §4 let a verifier refuse such a header or claim
// set, and a credential verifier must: the issuer and every API should read
// the same "sub" and "scope". These functions scan JSON that go-jose or
// encoding/json have already accepted or will parse next; anything they do
// not understand is malformed.

// jsonScanner walks one JSON value.
type jsonScanner struct {
	b     []byte
	i     int
	depth int
}

// maxJSONDepth bounds nesting (an "act" chain nests two levels per agent).
const maxJSONDepth = 64

// headerNames refuses a JOSE header that names a member twice, has more
// than maxHeaderMembers members, or names "crit" or "b64".
func headerNames(b []byte) error {
	s := jsonScanner{b: b}
	s.ws()
	var seenBuf [maxHeaderMembers][]byte
	seen := seenBuf[:0]
	if err := s.object(func(name []byte) error {
		if len(seen) == maxHeaderMembers {
			return ErrMalformed
		}
		if string(name) == "crit" || string(name) == "b64" {
			return ErrHeader
		}
		for _, n := range seen {
			if bytes.Equal(n, name) {
				return ErrMalformed
			}
		}
		seen = append(seen, name)
		return nil
	}); err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return ErrMalformed
	}
	return nil
}

// noDuplicateNames refuses b unless it is one JSON object in which no
// object, at any depth, names a member twice.
func noDuplicateNames(b []byte) error {
	s := jsonScanner{b: b}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return ErrMalformed
	}
	if err := s.value(); err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return ErrMalformed
	}
	return nil
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) value() error {
	s.ws()
	if s.i >= len(s.b) {
		return ErrMalformed
	}
	switch s.b[s.i] {
	case '{':
		// Names are few per object in a credential; a linear search of
		// the ones seen beats a map and allocates nothing for up to 16.
		var seenBuf [16][]byte
		seen := seenBuf[:0]
		return s.object(func(name []byte) error {
			for _, n := range seen {
				if bytes.Equal(n, name) {
					return ErrMalformed
				}
			}
			seen = append(seen, name)
			return nil
		})
	case '[':
		return s.array()
	case '"':
		_, err := s.str()
		return err
	default:
		// A number, true, false or null: encoding/json checks its form.
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			case '{', '[', '"', ':':
				return ErrMalformed
			}
			s.i++
		}
		return nil
	}
}

// object scans an object at s.i, calling name with each member name.
func (s *jsonScanner) object(name func([]byte) error) error {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return ErrMalformed
	}
	if s.depth++; s.depth > maxJSONDepth {
		return ErrMalformed
	}
	defer func() { s.depth-- }()
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		n, err := s.str()
		if err != nil {
			return err
		}
		if err := name(n); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return ErrMalformed
		}
		s.i++
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return ErrMalformed
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return ErrMalformed
		}
	}
}

func (s *jsonScanner) array() error {
	if s.depth++; s.depth > maxJSONDepth {
		return ErrMalformed
	}
	defer func() { s.depth-- }()
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return ErrMalformed
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return ErrMalformed
		}
	}
}

// str scans a string at s.i and returns its value: the raw bytes when it
// has no escape, else the decoded text, so that "s\u0075b" is "sub".
func (s *jsonScanner) str() ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, ErrMalformed
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			s.i = j + 1
			if !escaped {
				return s.b[start+1 : j], nil
			}
			var v string
			if err := json.Unmarshal(s.b[start:j+1], &v); err != nil {
				return nil, ErrMalformed
			}
			return []byte(v), nil
		}
	}
	return nil, ErrMalformed
}
