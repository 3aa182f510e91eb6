// Package devpki is a certificate authority for running jitid on one
// machine or in docker compose the way production runs it: every service
// and every caller holds an X.509 SVID (ECDSA P-256, one spiffe:// URI SAN,
// usable as server and client) signed by a local CA, and every link is
// mutual TLS.
//
// Ensure writes the CA and the SVIDs into a directory as PEM files:
//
//	ca.pem, ca-key.pem            the CA (ca.pem is the trust bundle)
//	<name>.pem, <name>-key.pem    one SVID per identity
//
// Keys are PKCS#8, mode 0600. Ensure is idempotent: a file that is valid
// (parses, matches its key, chains to the CA, names the expected SPIFFE ID
// and is not near its end) is kept, anything else is issued anew, and a new
// CA reissues every SVID. Running it again before the SVIDs expire renews
// them; the jitid services re-read their certificate files, so a renewal
// needs no restart.
//
// This CA is for development and demos: its key sits in a file next to the
// certificates. Production takes SVIDs from SPIRE (-spiffe-socket) or from
// the organisation's own CA.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Defaults of Options.
const (
	DefaultCAValidity   = 365 * 24 * time.Hour
	DefaultSVIDValidity = 30 * 24 * time.Hour
)

// Identity is one SVID to hold: Name is the file stem, ID the SPIFFE ID.
type Identity struct {
	Name string
	ID   string
	// Hosts are DNS names and IP addresses added as further SANs, so that
	// a client that checks the host name (grpcurl, curl) accepts a
	// service's certificate; jitid itself checks only the SPIFFE ID.
	Hosts []string
}

// Identities returns the identities of the demo set-up in trust domain td:
// the three services (valid for localhost and their compose host name), a
// demo platform, a second platform (to show what one platform cannot do to
// another's credentials, and for the benchmarks' flood test), an admin and
// an auditor.
func Identities(td string) []Identity {
	id := func(path string) string { return "spiffe://" + td + "/" + path }
	hosts := func(name string) []string { return []string{name, "localhost", "127.0.0.1", "::1"} }
	return []Identity{
		{Name: "issuer", ID: id("issuer"), Hosts: hosts("issuer")},
		{Name: "policy", ID: id("policy"), Hosts: hosts("policy")},
		{Name: "audit", ID: id("audit"), Hosts: hosts("audit")},
		{Name: "platform", ID: id("platform/demo")},
		{Name: "platform-b", ID: id("platform/other")},
		{Name: "admin", ID: id("admin")},
		{Name: "auditor", ID: id("auditor")},
	}
}

// Options configure Ensure.
type Options struct {
	// Dir receives the files; it is created (mode 0700) when missing.
	Dir string
	// TrustDomain is the SPIFFE trust domain, e.g. "jitid.local".
	TrustDomain string
	// Identities are the SVIDs to hold; nil means Identities(TrustDomain).
	Identities []Identity
	// CAValidity and SVIDValidity are the lives of new certificates; zero
	// means the defaults. A certificate with less than a third of its life
	// left is renewed.
	CAValidity, SVIDValidity time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Paths are the files of one identity.
type Paths struct {
	Cert, Key string
}

// Result says where the files are and what Ensure did.
type Result struct {
	// CA is the trust bundle (ca.pem).
	CA string
	// SVIDs are the files of each identity, by name.
	SVIDs map[string]Paths
	// Issued names what was written anew ("ca" and identity names); empty
	// when everything was kept.
	Issued []string
}

// CertPath and KeyPath return where Ensure writes the SVID of name in dir.
func CertPath(dir, name string) string { return filepath.Join(dir, name+".pem") }

// KeyPath returns where Ensure writes the key of name's SVID in dir.
func KeyPath(dir, name string) string { return filepath.Join(dir, name+"-key.pem") }

// CAPath returns where Ensure writes the CA certificate (the trust bundle).
func CAPath(dir string) string { return filepath.Join(dir, "ca.pem") }

// Ensure makes Dir hold a valid CA and a valid SVID for every identity.
func Ensure(o Options) (Result, error) {
	if o.Dir == "" {
		return Result{}, errors.New("devpki: no directory")
	}
	td, err := url.Parse("spiffe://" + o.TrustDomain)
	if err != nil || o.TrustDomain == "" || td.Host != o.TrustDomain || td.Path != "" {
		return Result{}, fmt.Errorf("devpki: trust domain %q: want a host name such as jitid.local", o.TrustDomain)
	}
	if o.Identities == nil {
		o.Identities = Identities(o.TrustDomain)
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.SVIDValidity <= 0 {
		o.SVIDValidity = DefaultSVIDValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	for _, id := range o.Identities {
		u, err := url.Parse(id.ID)
		if err != nil || u.Scheme != "spiffe" || u.Host != o.TrustDomain || u.Path == "" {
			return Result{}, fmt.Errorf("devpki: identity %s: %q is not a SPIFFE ID in trust domain %s", id.Name, id.ID, o.TrustDomain)
		}
		if id.Name == "" || id.Name == "ca" || filepath.Base(id.Name) != id.Name {
			return Result{}, fmt.Errorf("devpki: identity name %q: want a plain file name other than ca", id.Name)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("devpki: %w", err)
	}
	now := o.Now()
	res := Result{CA: CAPath(o.Dir), SVIDs: map[string]Paths{}}

	ca, err := loadCA(o.Dir, td, now)
	if err != nil {
		if ca, err = newCA(td, now, o.CAValidity); err != nil {
			return Result{}, err
		}
		if err := writePair(res.CA, filepath.Join(o.Dir, "ca-key.pem"), ca.cert, ca.key); err != nil {
			return Result{}, err
		}
		res.Issued = append(res.Issued, "ca")
	}
	for _, id := range o.Identities {
		p := Paths{Cert: CertPath(o.Dir, id.Name), Key: KeyPath(o.Dir, id.Name)}
		res.SVIDs[id.Name] = p
		if checkSVID(p, ca, id, now) == nil {
			continue
		}
		cert, key, err := ca.issue(id, now, o.SVIDValidity)
		if err != nil {
			return Result{}, err
		}
		if err := writePair(p.Cert, p.Key, cert, key); err != nil {
			return Result{}, err
		}
		res.Issued = append(res.Issued, id.Name)
	}
	return res, nil
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(td *url.URL, now time.Time, validity time.Duration) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "jitid development CA " + td.Host},
		URIs:                  []*url.URL{td},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devpki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func (ca *authority) issue(id Identity, now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	u, err := url.Parse(id.ID)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	tmpl.DNSNames, tmpl.IPAddresses = splitHosts(id.Hosts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: issue %s: %w", id.ID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadCA returns the CA in dir when it is whole, of trust domain td and not
// near its end.
func loadCA(dir string, td *url.URL, now time.Time) (*authority, error) {
	cert, key, err := readPair(CAPath(dir), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || len(cert.URIs) != 1 || cert.URIs[0].String() != td.String() {
		return nil, errors.New("not this trust domain's CA")
	}
	if err := fresh(cert, now); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// checkSVID returns nil when the files at p hold a fresh SVID for id signed
// by ca, with its key.
func checkSVID(p Paths, ca *authority, id Identity, now time.Time) error {
	cert, _, err := readPair(p.Cert, p.Key)
	if err != nil {
		return err
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id.ID {
		return errors.New("another SPIFFE ID")
	}
	dns, ips := splitHosts(id.Hosts)
	if !slices.Equal(cert.DNSNames, dns) || !slices.EqualFunc(cert.IPAddresses, ips, net.IP.Equal) {
		return errors.New("other host names")
	}
	if err := cert.CheckSignatureFrom(ca.cert); err != nil {
		return err
	}
	return fresh(cert, now)
}

// fresh fails when less than a third of cert's life is left.
func fresh(cert *x509.Certificate, now time.Time) error {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if now.Before(cert.NotBefore) || cert.NotAfter.Sub(now) < life/3 {
		return errors.New("expired or near expiry")
	}
	return nil
}

func readPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath) //nolint:gosec // G304: a path under the directory the caller configured
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath) //nolint:gosec // G304: as above
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, errors.New("not a PEM certificate and PKCS#8 key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the key does not match the certificate")
	}
	return cert, key, nil
}

// writePair writes the key first and the certificate second, each by a
// rename, so that a service re-reading its files never sees a torn file.
func writePair(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename; a leftover is what is removed
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devpki: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devpki: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+).
		panic(err)
	}
	return n
}
