package signing

// ForgetVerified empties the verified-token cache of k's current key state,
// so that a benchmark can measure Verify on a cache miss.
func ForgetVerified(k *KeySet) {
	st := k.state.Load()
	st.verified.m.Clear()
	st.verified.n.Store(0)
}

// AppendClaimsJSON is appendClaimsJSON, for tests against go-jose's builder.
var AppendClaimsJSON = appendClaimsJSON
