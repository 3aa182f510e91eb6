// Package storeauth is how the services authenticate to Redis and NATS:
// secrets are read from files, never taken from flags or environment
// variables, which show in ps and in /proc/<pid>/environ.
package storeauth

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jitid/jitid/pkg/servicecmd"
)

// maxSecretBytes bounds a secret file: a password or seed is short, and a
// wrong path (a log, a device) must not be read whole.
const maxSecretBytes = 64 << 10

// ReadSecretFile returns the content of path without its trailing line
// break. It refuses a file that the group or others may read, as ssh does
// for private keys: such a secret is already shared. Errors name the file,
// never its content.
func ReadSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s: mode %04o lets group or others read it; chmod 600", path, perm)
	}
	if fi.Size() > maxSecretBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxSecretBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return s, nil
}

// TLSFiles are the PEM files of a TLS client connection to a store.
type TLSFiles struct {
	CA   string // CA certificates the server is verified against; system roots when empty
	Cert string // client certificate, with Key
	Key  string
}

// Enabled reports whether any TLS file is set.
func (t TLSFiles) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// Validate reports a certificate without its key or a key without its
// certificate; prefix is the flag prefix (redis, nats).
func (t TLSFiles) Validate(prefix string) []error {
	if (t.Cert == "") != (t.Key == "") {
		return []error{servicecmd.Invalid(prefix+"-tls-cert", "-%s-tls-cert and -%s-tls-key go together", prefix, prefix)}
	}
	return nil
}

// Config returns the client TLS configuration (TLS 1.2 or later), or nil
// when no file is set.
func (t TLSFiles) Config() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", t.CA)
		}
		c.RootCAs = pool
	}
	if t.Cert != "" {
		if _, err := ReadSecretFile(t.Key); err != nil {
			return nil, err
		}
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			// The tls error can quote PEM blocks; name the files only.
			return nil, fmt.Errorf("%s, %s: not a certificate and its private key", t.Cert, t.Key)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// NATS is how a service authenticates to NATS: at most one of Creds, NKey
// or User with PasswordFile, and optionally TLS.
type NATS struct {
	Creds        string // .creds file: user JWT and NKey seed
	NKey         string // NKey seed file
	User         string
	PasswordFile string
	TLS          TLSFiles
}

// AddFlags adds the -nats-* credential flags to fs, filling n.
func (n *NATS) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&n.Creds, "nats-creds", "", "NATS .creds file (user JWT and NKey seed; mode 0600)")
	fs.StringVar(&n.NKey, "nats-nkey", "", "file holding a NATS NKey seed (mode 0600)")
	fs.StringVar(&n.User, "nats-user", "", "NATS user name, with -nats-password-file")
	fs.StringVar(&n.PasswordFile, "nats-password-file", "", "file holding the password of -nats-user (mode 0600)")
	fs.StringVar(&n.TLS.CA, "nats-tls-ca", "", "PEM CA certificates the NATS server is verified against; turns on TLS")
	fs.StringVar(&n.TLS.Cert, "nats-tls-cert", "", "PEM client certificate for NATS, with -nats-tls-key")
	fs.StringVar(&n.TLS.Key, "nats-tls-key", "", "PEM private key of -nats-tls-cert (mode 0600)")
}

// Validate reports every conflict at once: more than one way to
// authenticate, a user without a password file or the reverse, half a
// client certificate.
func (n NATS) Validate() []error {
	var errs []error
	var methods []string
	if n.Creds != "" {
		methods = append(methods, "-nats-creds")
	}
	if n.NKey != "" {
		methods = append(methods, "-nats-nkey")
	}
	if n.User != "" || n.PasswordFile != "" {
		methods = append(methods, "-nats-user")
		if n.User == "" {
			errs = append(errs, servicecmd.Invalid("nats-password-file", "needs -nats-user"))
		}
		if n.PasswordFile == "" {
			errs = append(errs, servicecmd.Invalid("nats-user", "needs -nats-password-file"))
		}
	}
	if len(methods) > 1 {
		errs = append(errs, servicecmd.Invalid(strings.TrimPrefix(methods[0], "-"), "conflicts with %s: set one way to authenticate to NATS", strings.Join(methods[1:], ", ")))
	}
	return append(errs, n.TLS.Validate("nats")...)
}

// Options returns the nats.Options that authenticate as configured, reading
// the secret files now so that a missing or shared file fails at start.
func (n NATS) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.Creds != "":
		if _, err := ReadSecretFile(n.Creds); err != nil {
			return nil, fmt.Errorf("nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.NKey != "":
		if _, err := ReadSecretFile(n.NKey); err != nil {
			return nil, fmt.Errorf("nats-nkey: %w", err)
		}
		opt, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			// nkeys errors do not quote the seed, but keep to the file name.
			return nil, fmt.Errorf("nats-nkey: %s: not an NKey seed", n.NKey)
		}
		opts = append(opts, opt)
	case n.User != "":
		pw, err := ReadSecretFile(n.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("nats-password-file: %w", err)
		}
		opts = append(opts, nats.UserInfo(n.User, pw))
	}
	tc, err := n.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("nats-tls: %w", err)
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}
