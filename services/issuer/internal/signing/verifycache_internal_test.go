package signing

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// These tests drive verifiedCache directly: through KeySet.Verify, its
// bounds would take tens of thousands of signatures.

var cacheT0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func key(i int) [sha256.Size]byte {
	var k [sha256.Size]byte
	binary.BigEndian.PutUint64(k[:], uint64(i))
	return k
}

func tokenExpiring(at time.Time) *verifiedToken {
	return &verifiedToken{exp: jwt.NumericDate(at.Unix()), iat: jwt.NumericDate(cacheT0.Unix())}
}

func TestVerifiedCacheDropsExpiredBeforeLive(t *testing.T) {
	t.Parallel()
	const leeway = 5 * time.Second
	short, long := cacheT0.Add(time.Minute), cacheT0.Add(time.Hour)
	for _, tt := range []struct {
		name        string
		sweptAt     time.Time
		wantExpired bool // the short ones are dropped
	}{
		{"within the leeway", short.Add(leeway - time.Second), false},
		{"past the leeway", short.Add(leeway), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifiedCache(leeway)
			for i := range minSweep {
				exp := long
				if i%2 == 0 {
					exp = short
				}
				v.put(key(i), tokenExpiring(exp), cacheT0)
			}
			if got := v.len(); got != minSweep {
				t.Fatalf("len = %d before a sweep is due, want %d", got, minSweep)
			}
			v.put(key(-1), tokenExpiring(long), tt.sweptAt) // due: sweeps
			want := minSweep + 1
			if tt.wantExpired {
				want = minSweep/2 + 1
			}
			if got := v.len(); got != want {
				t.Errorf("len = %d after the sweep, want %d", got, want)
			}
			for i := range minSweep {
				_, ok := v.get(key(i))
				if dropped := tt.wantExpired && i%2 == 0; ok == dropped {
					t.Fatalf("token %d (short-lived: %v) remembered: %v", i, i%2 == 0, ok)
				}
			}
		})
	}
}

func TestVerifiedCacheCapHolds(t *testing.T) {
	t.Parallel()
	v := newVerifiedCache(0)
	far := cacheT0.Add(24 * time.Hour)
	sweeps := 0
	for i := range 3 * maxVerified {
		before := v.len()
		v.put(key(i), tokenExpiring(far), cacheT0)
		n := v.len()
		if n > maxVerified {
			t.Fatalf("len = %d after %d puts of live tokens, over the cap %d", n, i+1, maxVerified)
		}
		if n <= before {
			sweeps++
			if n > maxVerified/2+1 {
				t.Fatalf("len = %d after dropping live tokens at the cap, want at most %d", n, maxVerified/2+1)
			}
		}
		if _, ok := v.get(key(i)); !ok {
			t.Fatalf("token %d not remembered right after its put", i)
		}
	}
	// Amortised: every sweep at the cap frees half of it.
	if sweeps > 3*2+1 {
		t.Errorf("%d sweeps that dropped live tokens for %d puts, want at most 7", sweeps, 3*maxVerified)
	}
}

// With tokens issued at a steady rate and each living a fixed time, the
// cache holds the live ones, and about twice that at most.
func TestVerifiedCacheFollowsLiveTokens(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		life      time.Duration // = live tokens at one per second
		wantAtMax int
	}{
		{"few live", 100 * time.Second, minSweep},
		{"many live", 3000 * time.Second, 2 * 3000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifiedCache(0)
			now := cacheT0
			const puts = 20000
			for i := range puts {
				now = now.Add(time.Second)
				v.put(key(i), tokenExpiring(now.Add(tt.life)), now)
				if n := v.len(); n > tt.wantAtMax+1 {
					t.Fatalf("len = %d after %d puts, want at most %d", n, i+1, tt.wantAtMax+1)
				}
			}
			live := int(tt.life / time.Second)
			for i := puts - live; i < puts; i++ {
				if _, ok := v.get(key(i)); !ok {
					t.Fatalf("live token %d forgotten", i)
				}
			}
		})
	}
}

func TestVerifiedCacheConcurrent(t *testing.T) {
	t.Parallel()
	v := newVerifiedCache(time.Second)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			now := cacheT0
			for i := range 3 * minSweep {
				now = now.Add(time.Second)
				v.put(key(g<<20|i), tokenExpiring(now.Add(time.Duration(i%300)*time.Second)), now)
				v.get(key(g<<20 | i/2))
				v.get(key(i))
			}
		})
	}
	wg.Wait()
	if n := v.len(); n > maxVerified {
		t.Errorf("len = %d, over the cap", n)
	}
}
