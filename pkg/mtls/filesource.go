package mtls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrKeyPermissions is returned when the private key file may be read or
// written by group or others and FileConfig.AllowInsecureKeyPermissions is
// not set.
var ErrKeyPermissions = errors.New("mtls: private key file is accessible by group or others")

// ErrSourceClosed is returned by a FileSource after Close.
var ErrSourceClosed = errors.New("mtls: source closed")

// DefaultPollInterval is how often a FileSource re-reads its files when
// FileConfig.PollInterval is zero.
const DefaultPollInterval = time.Second

// FileConfig names the PEM files of a FileSource.
type FileConfig struct {
	// CertFile holds the X.509 SVID: the leaf certificate with exactly one
	// spiffe:// URI SAN, then any intermediates.
	CertFile string
	// KeyFile holds the leaf's private key, PKCS#8 ("PRIVATE KEY" block). It
	// must be readable by its owner only (mode 0600 or 0400).
	KeyFile string
	// BundleFile holds the CA certificates peers of the SVID's trust domain
	// are verified against.
	BundleFile string
	// PollInterval is how often the files are re-read; DefaultPollInterval
	// when zero.
	PollInterval time.Duration
	// AllowInsecureKeyPermissions turns a key file that group or others may
	// access from an error into a logged warning.
	AllowInsecureKeyPermissions bool
	// Logger receives rotations and files that failed to load; slog.Default
	// when nil. Contents of the files are never logged.
	Logger *slog.Logger
}

// FileSource is a Source read from PEM files and re-read every PollInterval,
// so that certificates rotated on disk are served without a restart. It is
// safe for concurrent use.
type FileSource struct {
	cfg    FileConfig
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.RWMutex
	current *fileState
	closed  bool
	// lastErr and warnedMode avoid logging the same thing at every poll.
	lastErr    string
	warnedMode os.FileMode
}

// fileState is one consistent set of files: the raw bytes (to notice a
// change) and what they parse to.
type fileState struct {
	cert, key, bundle []byte
	svid              *x509svid.SVID
	bundles           *x509bundle.Bundle
}

// NewFileSource loads the files once, failing if they do not make a valid
// SVID and bundle, then re-reads them every PollInterval until Close.
func NewFileSource(cfg FileConfig) (*FileSource, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.BundleFile == "" {
		return nil, errors.New("mtls: certificate, key and bundle files are all required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &FileSource{cfg: cfg, log: log.With("cert_file", cfg.CertFile), done: make(chan struct{})}
	st, err := s.load(nil)
	if err != nil {
		return nil, err
	}
	s.current = st
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.poll(ctx)
	return s, nil
}

// GetX509SVID returns the current SVID. It implements x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrSourceClosed
	}
	return s.current.svid, nil
}

// GetX509BundleForTrustDomain returns the bundle of the bundle file when td
// is the SVID's trust domain; the files carry no other. It implements
// x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrSourceClosed
	}
	if td != s.current.bundles.TrustDomain() {
		return nil, fmt.Errorf("mtls: no trust bundle for trust domain %q", td)
	}
	return s.current.bundles, nil
}

// Reload re-reads the files now and switches to them if they changed and are
// valid. The poll calls it; a SIGHUP handler may too.
func (s *FileSource) Reload() error {
	s.mu.RLock()
	prev, closed := s.current, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrSourceClosed
	}
	st, err := s.load(prev)
	if err != nil {
		return err
	}
	if st == prev {
		return nil
	}
	s.mu.Lock()
	s.current = st
	s.lastErr = ""
	s.mu.Unlock()
	s.log.Info("mtls: certificate files reloaded",
		"spiffe_id", st.svid.ID.String(),
		"not_after", st.svid.Certificates[0].NotAfter,
		"serial", st.svid.Certificates[0].SerialNumber.String())
	return nil
}

// Close stops the polling. Later calls to the source's getters fail.
func (s *FileSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return nil
}

func (s *FileSource) poll(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.Reload()
		if err == nil || errors.Is(err, ErrSourceClosed) {
			continue
		}
		// A rotation that writes the files one by one is caught half-way
		// here; the next poll sees the finished set. Say so once per error,
		// not once per second.
		s.mu.Lock()
		repeated := s.lastErr == err.Error()
		s.lastErr = err.Error()
		s.mu.Unlock()
		if !repeated {
			s.log.Warn("mtls: certificate files not reloaded, keeping the previous ones", "err", err)
		}
	}
}

// load reads the three files and parses them, returning prev unchanged when
// the bytes are the same as prev's.
func (s *FileSource) load(prev *fileState) (*fileState, error) {
	key, err := s.readKey()
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(s.cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: read certificate: %w", err)
	}
	bundle, err := os.ReadFile(s.cfg.BundleFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: read trust bundle: %w", err)
	}
	if prev != nil && bytes.Equal(cert, prev.cert) && bytes.Equal(key, prev.key) && bytes.Equal(bundle, prev.bundle) {
		return prev, nil
	}
	// x509svid.Parse checks the leaf's SPIFFE ID and key usage and that the
	// key matches it; its errors name what is wrong, never the key itself.
	svid, err := x509svid.Parse(cert, key)
	if err != nil {
		return nil, fmt.Errorf("mtls: %s and %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	bundles, err := x509bundle.Parse(svid.ID.TrustDomain(), bundle)
	if err != nil {
		return nil, fmt.Errorf("mtls: trust bundle %s: %w", s.cfg.BundleFile, err)
	}
	if bundles.Empty() {
		return nil, fmt.Errorf("mtls: trust bundle %s holds no certificate", s.cfg.BundleFile)
	}
	return &fileState{cert: cert, key: key, bundle: bundle, svid: svid, bundles: bundles}, nil
}

// readKey checks the mode on the open file, so that the bytes read are those
// of the file whose mode was checked.
func (s *FileSource) readKey() ([]byte, error) {
	f, err := os.Open(s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: read private key: %w", err)
	}
	defer func() { _ = f.Close() }() // only read: Close reports nothing to act on
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("mtls: read private key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if !s.cfg.AllowInsecureKeyPermissions {
			return nil, fmt.Errorf("%w: %s has mode %#o, want 0600 or stricter", ErrKeyPermissions, s.cfg.KeyFile, perm)
		}
		s.warnKeyPermissions(perm)
	}
	key, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("mtls: read private key: %w", err)
	}
	return key, nil
}

func (s *FileSource) warnKeyPermissions(perm os.FileMode) {
	s.mu.Lock()
	repeated := s.warnedMode == perm
	s.warnedMode = perm
	s.mu.Unlock()
	if !repeated {
		s.log.Warn("mtls: private key file is accessible by group or others; allowed by configuration", "key_file", s.cfg.KeyFile, "mode", fmt.Sprintf("%#o", perm))
	}
}
