package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Source supplies this workload's X.509 SVID and the trust bundles its peers
// are verified against. FileSource and go-spiffe's workloadapi.X509Source
// both implement it; each call returns the current contents, so a rotation
// reaches the next handshake.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// ServerTLSConfig returns a TLS 1.3 configuration that presents src's SVID,
// requires a client certificate, verifies it against src's bundle for the
// client's trust domain and lets authorize decide on the client's SPIFFE ID.
// It suits any server; gRPC servers use ServerCredentials. A nil authorize
// refuses every client.
func ServerTLSConfig(src Source, authorize Authorizer) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	tlsconfig.HookMTLSServerConfig(cfg, src, src, tlsAuthorizer(authorize))
	return cfg
}

// ClientTLSConfig returns a TLS 1.3 configuration that presents src's SVID
// and accepts only a server whose certificate verifies against src's bundle
// and whose SPIFFE ID authorize accepts. The host name is not checked: the
// SPIFFE ID is the server's identity. A nil authorize refuses every server.
func ClientTLSConfig(src Source, authorize Authorizer) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	tlsconfig.HookMTLSClientConfig(cfg, src, src, tlsAuthorizer(authorize))
	return cfg
}

// ServerCredentials returns gRPC server credentials built on ServerTLSConfig:
// a client outside the allow-list fails the handshake, so no handler runs
// for it.
func ServerCredentials(src Source, authorize Authorizer) credentials.TransportCredentials {
	return spiffeCredentials{credentials.NewTLS(ServerTLSConfig(src, authorize))}
}

// ClientCredentials returns gRPC client credentials built on ClientTLSConfig:
// a server outside the allow-list fails the handshake before any request is
// written to it, and the call fails with codes.Unavailable.
func ClientCredentials(src Source, authorize Authorizer) credentials.TransportCredentials {
	return spiffeCredentials{credentials.NewTLS(ClientTLSConfig(src, authorize))}
}

// PeerID returns the SPIFFE ID of the peer of the gRPC call in ctx, as
// verified and authorized by the handshake of ServerCredentials or
// ClientCredentials. It reports false for any other connection (plaintext,
// or TLS set up elsewhere, whose peer certificate nobody here verified).
func PeerID(ctx context.Context) (spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	return PeerIDFromPeer(p)
}

// PeerIDFromPeer is PeerID for a peer.Peer already at hand.
func PeerIDFromPeer(p *peer.Peer) (spiffeid.ID, bool) {
	info, ok := p.AuthInfo.(verifiedInfo)
	if !ok {
		return spiffeid.ID{}, false
	}
	return info.id, true
}

// spiffeCredentials marks the connections it hands to gRPC with the peer's
// SPIFFE ID, so that PeerID trusts only handshakes that checked it.
type spiffeCredentials struct {
	credentials.TransportCredentials
}

// verifiedInfo is the AuthInfo of a connection made by spiffeCredentials. It
// embeds credentials.TLSInfo so that gRPC's security-level checks and
// channelz still see a TLS connection.
type verifiedInfo struct {
	credentials.TLSInfo
	id spiffeid.ID
}

func (c spiffeCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return mark(c.TransportCredentials.ClientHandshake(ctx, authority, raw))
}

func (c spiffeCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return mark(c.TransportCredentials.ServerHandshake(raw))
}

func (c spiffeCredentials) Clone() credentials.TransportCredentials {
	return spiffeCredentials{c.TransportCredentials.Clone()}
}

func mark(conn net.Conn, info credentials.AuthInfo, err error) (net.Conn, credentials.AuthInfo, error) {
	if err != nil {
		return nil, nil, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.PeerCertificates) == 0 {
		conn.Close()
		return nil, nil, errors.New("mtls: handshake finished without a peer certificate")
	}
	// The handshake verified this leaf against the bundle and the Authorizer
	// accepted its ID, so parsing cannot fail here; checked all the same.
	id, err := x509svid.IDFromCert(tlsInfo.State.PeerCertificates[0])
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("mtls: peer SPIFFE ID: %w", err)
	}
	return conn, verifiedInfo{TLSInfo: tlsInfo, id: id}, nil
}

func tlsAuthorizer(a Authorizer) tlsconfig.Authorizer {
	if a == nil {
		return denyAll
	}
	return tlsconfig.Authorizer(a)
}
