package subjecttoken

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxDocumentSize bounds a discovery document or JWK set: a provider
// answering with more is treated as failing.
const maxDocumentSize = 1 << 20

// fetcher is the HTTP transport of one provider's discovery and JWK set
// requests. go-oidc fetches the JWK set again whenever a token names a key
// it has not cached, so every forged token with a made-up kid would cost
// the provider a request; fetcher answers a repeated GET of the same URL
// within the refetch interval with the previous answer instead. It also
// counts failed answers, replayed ones included, so that Verify can tell a
// key set it could not fetch from a forgery.
type fetcher struct {
	base     http.RoundTripper
	clock    func() time.Time
	interval time.Duration
	failures atomic.Uint64

	mu   sync.Mutex
	last map[string]*fetched
}

// fetched is one recorded answer.
type fetched struct {
	at     time.Time
	status int
	header http.Header
	body   []byte
	err    error
}

func (f *fetched) failed() bool { return f.err != nil || f.status != http.StatusOK }

func (f *fetched) replay(r *http.Request) (*http.Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", f.status, http.StatusText(f.status)),
		StatusCode:    f.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        f.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)),
		Request:       r,
	}, nil
}

func (t *fetcher) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		return t.transport().RoundTrip(r)
	}
	key := r.URL.String()
	now := t.clock()
	t.mu.Lock()
	prev, ok := t.last[key]
	t.mu.Unlock()
	if ok && now.Sub(prev.at) < t.interval && !now.Before(prev.at) {
		if prev.failed() {
			t.failures.Add(1)
		}
		return prev.replay(r)
	}

	f := &fetched{at: now}
	resp, err := t.transport().RoundTrip(r)
	if err == nil {
		f.status, f.header = resp.StatusCode, resp.Header
		f.body, err = io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
		resp.Body.Close()
		if err == nil && len(f.body) > maxDocumentSize {
			err = fmt.Errorf("%s: answer larger than %d bytes", r.URL.Redacted(), maxDocumentSize)
		}
	}
	f.err = err
	if f.failed() {
		t.failures.Add(1)
	}
	t.mu.Lock()
	t.last[key] = f
	t.mu.Unlock()
	return f.replay(r)
}

func (t *fetcher) transport() http.RoundTripper {
	if t.base != nil {
		return t.base
	}
	return http.DefaultTransport
}
