package signing

// ForgetVerified empties the verified-token cache of k's current key state,
// so that a benchmark can measure Verify on a cache miss.
func ForgetVerified(k *KeySet) {
	v := k.state.Load().verified
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.m)
}

// VerifiedLen returns how many tokens the verified-token cache of k's
// current key state remembers.
func VerifiedLen(k *KeySet) int { return k.state.Load().verified.len() }
