package callerauth

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keyFile is a JWKS file re-read every poll interval, so that a rotated
// key set is used without a restart. A file that stops parsing keeps the
// last good keys, and says so in the log once.
type keyFile struct {
	owner  string
	path   string
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.RWMutex
	raw     []byte
	set     []jose.JSONWebKey
	lastErr string
}

func openKeyFile(f KeyFile, every time.Duration, log *slog.Logger) (*keyFile, error) {
	kf := &keyFile{owner: f.Owner, path: f.Path, log: log.With("jwks_file", f.Path, "owner", f.Owner), done: make(chan struct{})}
	if _, err := kf.reload(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	kf.cancel = cancel
	go kf.poll(ctx, every)
	return kf, nil
}

// keys returns the keys of the set that kid names; with no kid, or for
// keys that name none, every key, since a client with one key need not
// name it.
func (f *keyFile) keys(kid string) []crypto.PublicKey {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []crypto.PublicKey
	for _, k := range f.set {
		if kid == "" || k.KeyID == "" || k.KeyID == kid {
			out = append(out, k.Key)
		}
	}
	return out
}

func (f *keyFile) close() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
}

func (f *keyFile) poll(ctx context.Context, every time.Duration) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := f.reload()
		switch {
		case err != nil:
			f.mu.Lock()
			repeated := f.lastErr == err.Error()
			f.lastErr = err.Error()
			f.mu.Unlock()
			if !repeated {
				f.log.Warn("callerauth: key file not reloaded, keeping the previous keys", "err", err)
			}
		case changed:
			f.log.Info("callerauth: key file reloaded")
		}
	}
}

// reload reads the file and switches to its keys when it changed and
// parses; it reports whether it switched.
func (f *keyFile) reload() (bool, error) {
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("callerauth: read key file: %w", err)
	}
	f.mu.RLock()
	same := f.raw != nil && bytes.Equal(raw, f.raw)
	f.mu.RUnlock()
	if same {
		return false, nil
	}
	set, err := parseKeySet(raw, f.owner)
	if err != nil {
		return false, fmt.Errorf("callerauth: key file %s: %w", f.path, err)
	}
	f.mu.Lock()
	f.raw, f.set, f.lastErr = raw, set, ""
	f.mu.Unlock()
	return true, nil
}

// parseKeySet parses a JWKS and refuses what must never verify a caller:
// a symmetric key (whoever holds the file could sign), a private key (a
// secret in the wrong place), an unusable key, or an empty set.
func parseKeySet(raw []byte, owner string) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("holds no key")
	}
	spiffe := strings.HasPrefix(owner, "spiffe://")
	for i, k := range set.Keys {
		switch {
		case k.Use != "" && k.Use != "sig" && k.Use != "jwt-svid":
			return nil, fmt.Errorf("key %d (kid %q): use %q, want sig or jwt-svid", i, k.KeyID, k.Use)
		case !k.Valid():
			return nil, fmt.Errorf("key %d (kid %q) is not a valid key", i, k.KeyID)
		case !k.IsPublic():
			return nil, fmt.Errorf("key %d (kid %q) is a private or symmetric key: the file holds public keys only", i, k.KeyID)
		case spiffe && k.KeyID == "":
			return nil, fmt.Errorf("key %d has no kid: a JWT authority is found by kid", i)
		}
	}
	return set.Keys, nil
}
