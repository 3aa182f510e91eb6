package signing

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// maxKeyFileBytes bounds a key file; a key is a few hundred bytes.
const maxKeyFileBytes = 64 << 10

// ReadDir reads the keys of dir, the form a Kubernetes secret mounts:
//
//   - *.pem, *.key: PEM blocks "PRIVATE KEY" (PKCS #8), "EC PRIVATE KEY"
//     (SEC 1) or "PUBLIC KEY" (PKIX)
//   - *.jwk, *.json: one JWK, private or public
//
// Names starting with "." (the ..data links of a secret mount) and other
// files are skipped. The private key of the file whose name sorts last
// signs; every other key is published for verification only. (A KeySet
// that reloads the directory adds a publish delay for keys that appear
// while it runs: see KeySet.Reload.)
func ReadDir(dir string) (signing crypto.Signer, published []crypto.PublicKey, err error) {
	files, err := readKeys(dir)
	if err != nil {
		return nil, nil, err
	}
	var privates []crypto.Signer
	for _, f := range files {
		if f.priv != nil {
			privates = append(privates, f.priv)
		} else {
			published = append(published, f.pub)
		}
	}
	if len(privates) == 0 {
		return nil, nil, fmt.Errorf("signing: no private key (PEM or JWK) in %s", dir)
	}
	signing = privates[len(privates)-1]
	for _, p := range privates[:len(privates)-1] {
		published = append(published, p.Public())
	}
	return signing, published, nil
}

// fileKey is one key read from a file: priv, or pub for a public key.
type fileKey struct {
	name string
	priv crypto.Signer
	pub  crypto.PublicKey
}

// readKeys returns the keys of dir in file name order.
func readKeys(dir string) ([]fileKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("signing: key dir: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	var out []fileKey
	for _, name := range names {
		path := filepath.Join(dir, name)
		var keys []any
		switch strings.ToLower(filepath.Ext(name)) {
		case ".pem", ".key":
			keys, err = readPEM(path)
		case ".jwk", ".json":
			keys, err = readJWK(path)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			switch k := k.(type) {
			case crypto.Signer:
				out = append(out, fileKey{name: name, priv: k})
			default:
				out = append(out, fileKey{name: name, pub: k})
			}
		}
	}
	return out, nil
}

func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if fi.IsDir() {
		return nil, nil
	}
	if fi.Size() > maxKeyFileBytes {
		return nil, fmt.Errorf("signing: %s: larger than %d bytes", path, maxKeyFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return b, nil
}

func readPEM(path string) ([]any, error) {
	rest, err := readFile(path)
	if err != nil || rest == nil {
		return nil, err
	}
	var keys []any
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var k any
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "EC PARAMETERS":
			// openssl ecparam -genkey writes the curve before the key.
			continue
		default:
			return nil, fmt.Errorf("signing: %s: PEM block %q is not a key", path, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("signing: %s: %w", path, err)
		}
		if err := checkKey(path, k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("signing: %s: no PEM key", path)
	}
	return keys, nil
}

func readJWK(path string) ([]any, error) {
	b, err := readFile(path)
	if err != nil || b == nil {
		return nil, err
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(b, &jwk); err != nil {
		return nil, fmt.Errorf("signing: %s: %w", path, err)
	}
	if jwk.Algorithm != "" && !slices.Contains(Algorithms, jose.SignatureAlgorithm(jwk.Algorithm)) {
		return nil, fmt.Errorf("signing: %s: algorithm %q not allowed (ES256 or EdDSA)", path, jwk.Algorithm)
	}
	if err := checkKey(path, jwk.Key); err != nil {
		return nil, err
	}
	return []any{jwk.Key}, nil
}

// checkKey refuses what cannot sign ES256 or EdDSA, HMAC secrets above all.
func checkKey(path string, k any) error {
	var pub crypto.PublicKey
	switch k := k.(type) {
	case crypto.Signer:
		pub = k.Public()
	default:
		pub = k
	}
	if _, err := publicJWK(pub); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
