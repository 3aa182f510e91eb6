package signing

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// Bounds of a verifiedCache.
const (
	// maxVerified is the most tokens a cache remembers.
	maxVerified = 1 << 14
	// minSweep is the size below which a cache does not look for expired
	// entries.
	minSweep = 1 << 10
)

// verifiedCache remembers tokens whose signature verified, so that a
// credential introspected on every call of an agent is not verified again
// each time: the ES256 verification and the JOSE parse are about 60% of
// the issuer's CPU per introspection (docs/BENCHMARKS.md). Only the
// signature and the claims' shape are remembered; times are checked on
// every call.
//
// It follows the set of live tokens: when it has doubled since it was last
// swept (at least minSweep, at most maxVerified entries), the tokens that
// have expired are dropped, so that it holds about twice the live tokens
// being introspected, and each sweep is paid for by the puts since the
// last. Only when more than half of maxVerified are still live are live
// tokens dropped too, down to half, whichever the map's order gives.
//
// A cache is shared by the key states of a KeySet as long as no key leaves
// it (see KeySet.apply), so that a token is only ever remembered while the
// key that verified it is published.
type verifiedCache struct {
	leeway time.Duration

	mu      sync.RWMutex
	m       map[[sha256.Size]byte]*verifiedToken
	sweepAt int // len(m) at which put sweeps
}

func newVerifiedCache(leeway time.Duration) *verifiedCache {
	return &verifiedCache{leeway: leeway, m: map[[sha256.Size]byte]*verifiedToken{}, sweepAt: minSweep}
}

func (v *verifiedCache) get(sum [sha256.Size]byte) (*verifiedToken, bool) {
	v.mu.RLock()
	t, ok := v.m[sum]
	v.mu.RUnlock()
	return t, ok
}

func (v *verifiedCache) put(sum [sha256.Size]byte, t *verifiedToken, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= v.sweepAt {
		v.sweep(now)
	}
	v.m[sum] = t
}

// sweep keeps the entries whose token has not expired at now, at most
// maxVerified/2 of them, in a new map: a Go map does not shrink, and the
// old one was sized for the peak.
func (v *verifiedCache) sweep(now time.Time) {
	live := 0
	for _, t := range v.m {
		if !t.expired(now, v.leeway) {
			live++
		}
	}
	live = min(live, maxVerified/2)
	kept := make(map[[sha256.Size]byte]*verifiedToken, live)
	for sum, t := range v.m {
		if len(kept) == live {
			break
		}
		if !t.expired(now, v.leeway) {
			kept[sum] = t
		}
	}
	v.m = kept
	v.sweepAt = min(max(2*len(kept), minSweep), maxVerified)
}

func (v *verifiedCache) len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.m)
}

// verifiedToken is what Verify needs of a token whose signature verified:
// the fields of the credential it describes and its times. It holds no
// more, so that a remembered token costs a few hundred bytes: not "iss"
// (the KeySet's issuer, checked before a token is remembered), nor
// "client_id" (the agent, as in "act"), nor the claims' structure; and its
// strings share one allocation.
type verifiedToken struct {
	exp, iat, nbf jwt.NumericDate
	hasNBF        bool
	sensitivity   identityv1.Sensitivity
	maxUses       int
	// strs holds the token's strings back to back; ends[i] is where the
	// i-th (strID, …) ends.
	strs string
	ends [numStrs]uint32
	// chain is the agents above the agent, nearest first, in strs after
	// the others.
	chain []string
}

// The strings of a verifiedToken, in their order in strs.
const (
	strID = iota
	strAudience
	strDelegator
	strAgent
	strTaskID
	strPurpose
	strScope
	strCnfJKT
	numStrs
)

// newVerifiedToken keeps what Verify needs of c, claims that passed
// VerifyClaims (so exp and iat are set).
func newVerifiedToken(c *credverify.Claims) *verifiedToken {
	t := &verifiedToken{
		exp:         *c.Expiry,
		iat:         *c.IssuedAt,
		sensitivity: identityv1.Sensitivity(identityv1.Sensitivity_value["SENSITIVITY_"+c.Task.Sensitivity]),
		maxUses:     c.MaxUses,
	}
	if c.NotBefore != nil {
		t.nbf, t.hasNBF = *c.NotBefore, true
	}
	var strs [numStrs]string
	strs[strID] = c.ID
	if len(c.Audience) > 0 {
		strs[strAudience] = c.Audience[0]
	}
	strs[strDelegator] = c.Subject
	strs[strAgent] = c.Agent()
	strs[strTaskID] = c.Task.ID
	strs[strPurpose] = c.Task.Purpose
	strs[strScope] = c.Scope
	if c.Cnf != nil {
		strs[strCnfJKT] = c.Cnf.JKT
	}
	var parents *credverify.Actor
	if c.Act != nil {
		parents = c.Act.Act
	}
	n := 0
	for _, s := range strs {
		n += len(s)
	}
	for a := parents; a != nil; a = a.Act {
		n += len(a.Sub)
	}
	var b strings.Builder
	b.Grow(n)
	for i, s := range strs {
		b.WriteString(s)
		t.ends[i] = uint32(b.Len())
	}
	for a := parents; a != nil; a = a.Act {
		b.WriteString(a.Sub)
	}
	t.strs = b.String()
	for a, off := parents, int(t.ends[numStrs-1]); a != nil; a = a.Act {
		t.chain = append(t.chain, t.strs[off:off+len(a.Sub)])
		off += len(a.Sub)
	}
	return t
}

// str returns the i-th string of t (strID, …).
func (t *verifiedToken) str(i int) string {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.strs[start:t.ends[i]]
}

// checkTimes is credverify.CheckTimes of the token's claims.
func (t *verifiedToken) checkTimes(now time.Time, leeway time.Duration) error {
	c := credverify.Claims{Claims: jwt.Claims{Expiry: &t.exp, IssuedAt: &t.iat}}
	if t.hasNBF {
		c.NotBefore = &t.nbf
	}
	return credverify.CheckTimes(&c, now, leeway)
}

// expired says whether checkTimes refuses the token for its expiry from
// now on.
func (t *verifiedToken) expired(now time.Time, leeway time.Duration) bool {
	return !now.Before(t.exp.Time().Add(leeway))
}

// credential returns the credential the token describes, as far as a
// token tells; a new one on every call, since callers own it.
func (t *verifiedToken) credential(iss string) *issuer.Credential {
	cred := &issuer.Credential{
		ID:        t.str(strID),
		Issuer:    iss,
		Audience:  t.str(strAudience),
		Agent:     &identityv1.Agent{Id: t.str(strAgent)},
		Delegator: &identityv1.Delegator{Id: t.str(strDelegator)},
		Task:      &identityv1.Task{Id: t.str(strTaskID), Purpose: t.str(strPurpose), Sensitivity: t.sensitivity},
		Scopes:    strings.Fields(t.str(strScope)),
		IssuedAt:  t.iat.Time(),
		ExpiresAt: t.exp.Time(),
		MaxUses:   t.maxUses,
		CnfJKT:    t.str(strCnfJKT),
	}
	if len(t.chain) > 0 {
		cred.Chain = make([]issuer.ChainLink, len(t.chain))
		for i, id := range t.chain {
			cred.Chain[i].Agent = &identityv1.Agent{Id: id}
		}
	}
	return cred
}
