package signing

import (
	"strconv"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
)

// appendClaimsJSON appends the JSON of c to b, byte for byte as go-jose's
// JWT builder (jwt.Signed(s).Claims(c)) writes it, so that tokens keep the
// form every issuer before this one signed (testdata/*.golden) while Sign
// skips the builder's reflection and its round trip through a map: the
// members of every object sorted by name (the builder encodes a map), no
// spaces, and strings escaped as go-jose's encoder escapes them.
// Claims.Task is always written, the rest only when set, as their
// omitempty tags say.
func appendClaimsJSON(b []byte, c *credverify.Claims) []byte {
	b = append(b, '{')
	if c.Act != nil {
		b = appendActor(member(b, "act"), c.Act)
	}
	switch len(c.Audience) {
	case 0:
	case 1: // jwt.Audience writes one audience as a string
		b = appendString(member(b, "aud"), c.Audience[0])
	default:
		b = append(member(b, "aud"), '[')
		for i, a := range c.Audience {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	b = optString(b, "client_id", c.ClientID)
	if c.Cnf != nil {
		b = append(member(b, "cnf"), '{')
		b = optString(b, "jkt", c.Cnf.JKT)
		b = append(b, '}')
	}
	b = optDate(b, "exp", c.Expiry)
	b = optDate(b, "iat", c.IssuedAt)
	b = optString(b, "iss", c.Issuer)
	b = optString(b, "jti", c.ID)
	if c.MaxUses != 0 {
		b = strconv.AppendInt(member(b, "max_uses"), int64(c.MaxUses), 10)
	}
	b = optDate(b, "nbf", c.NotBefore)
	b = optString(b, "scope", c.Scope)
	b = optString(b, "sub", c.Subject)
	b = append(member(b, "task"), '{')
	b = appendString(member(b, "id"), c.Task.ID)
	b = optString(b, "purpose", c.Task.Purpose)
	b = optString(b, "sensitivity", c.Task.Sensitivity)
	return append(b, '}', '}')
}

// appendActor writes an "act" object: its parent ("act") sorts before
// "sub".
func appendActor(b []byte, a *credverify.Actor) []byte {
	b = append(b, '{')
	if a.Act != nil {
		b = appendActor(member(b, "act"), a.Act)
	}
	b = appendString(member(b, "sub"), a.Sub)
	return append(b, '}')
}

// member writes the name of the next member of the object open at the end
// of b, after a comma unless it is the first. Names are plain ASCII.
func member(b []byte, name string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func optString(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(member(b, name), s)
}

func optDate(b []byte, name string, d *jwt.NumericDate) []byte {
	if d == nil {
		return b
	}
	return strconv.AppendInt(member(b, name), int64(*d), 10)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string escaped as go-jose's encoder
// does: '"', '\\', control characters, '<', '>', '&', U+2028 and U+2029.
// An invalid UTF-8 byte becomes U+FFFD written as is: the builder's encoder
// wrote it as the escape \ufffd, decoded it into its map, and wrote the
// map with the character itself.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, string(utf8.RuneError)...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
