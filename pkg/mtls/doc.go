// Package mtls gives jitid's gRPC (and HTTP) links mutual TLS with SPIFFE
// identities: TLS 1.3 only, a certificate on both sides, and each side
// checking the other's SPIFFE ID (the URI SAN spiffe://<trust-domain>/<path>)
// against an allow-list before a single request is sent or served.
//
// # Certificate sources
//
// A Source supplies this workload's X.509 SVID (certificate chain and key)
// and the trust bundle it verifies peers against. Two are provided, and both
// rotate without a restart:
//
//   - NewFileSource reads three PEM files: the certificate chain (leaf first,
//     one spiffe:// URI SAN), its PKCS#8 private key, and the CA certificates
//     of the trust domain. It re-reads them every PollInterval (one second by
//     default) and switches to the new contents once they parse and the key
//     matches the certificate, so a rotation that writes the files one at a
//     time never serves a half-written pair; until then the previous SVID
//     stays in use. The key file is refused when group or others may read or
//     write it, unless FileConfig.AllowInsecureKeyPermissions turns that into
//     a logged warning (for volumes whose modes cannot be chosen).
//   - NewWorkloadSource fetches SVIDs and bundles from the SPIFFE Workload
//     API (a SPIRE agent's socket, given as unix:///path or taken from
//     SPIFFE_ENDPOINT_SOCKET) and follows the agent's rotations as they are
//     pushed. When the agent hands the workload several SVIDs,
//     WorkloadConfig.ID picks the one to present.
//
// # Allow-lists
//
// Every ServerCredentials and ClientCredentials takes an Authorizer; there is
// no "accept anyone" default, and a nil Authorizer refuses every peer. A
// peer is first verified against the trust bundle of its own trust domain
// (a certificate from any other CA fails here), then its SPIFFE ID is given
// to the Authorizer:
//
//   - AllowIDs accepts exactly the listed IDs (the issuer's policy client
//     allows only the policy service's ID);
//   - AllowTrustDomain accepts any member of a trust domain;
//   - AnyOf accepts a peer that any of its authorizers accepts;
//   - ParseAllowList builds one from configuration strings, where
//     "spiffe://td/path" is one ID and "spiffe://td" is the whole trust
//     domain.
//
// A refused peer fails the TLS handshake: a client never sends a request to
// a server outside its allow-list, and a server never runs a handler for a
// client outside its own. Handlers learn who called from PeerID, which reads
// the verified SPIFFE ID from the connection's peer.Peer.
//
// CheckPlaintextListen is the guard for the other side of that rule: a
// service without TLS refuses a non-loopback listen address unless it was
// started with -insecure.
package mtls
