package devstack

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jitid/jitid/dev/internal/devpki"
	"github.com/jitid/jitid/testkit/launch"
)

// Subject token types of RFC 8693 that the demo provider's tokens are
// accepted as: type identifiers, not credentials.
const (
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"     //nolint:gosec // G101: a token type URN
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token" //nolint:gosec // G101: a token type URN
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"          //nolint:gosec // G101: a token type URN
)

// IDPConfig is the file the issuer's -idp-config reads: the trusted OpenID
// Providers and how their claims map to a delegator.
type IDPConfig struct {
	Providers []IDPProvider `json:"providers"`
}

// IDPProvider is one trusted OpenID Provider.
type IDPProvider struct {
	Issuer     string     `json:"issuer"`
	Audiences  []string   `json:"audiences"`
	TokenTypes []string   `json:"token_types"`
	Mapping    IDPMapping `json:"mapping"`
}

// IDPMapping says which claims hold the delegator's id, entitlements and
// attributes.
type IDPMapping struct {
	IDPrefix          string              `json:"id_prefix"`
	EntitlementsClaim string              `json:"entitlements_claim"`
	Entitlements      map[string][]string `json:"entitlements"`
	Attributes        map[string]string   `json:"attributes"`
	MFAAttribute      string              `json:"mfa_attribute"`
}

// DemoIDPConfig returns the configuration that trusts the demo provider at
// issuer: its tokens for the audience "jitid" name delegators "user:<sub>";
// the group finance grants the payment scopes and staff the ticket scopes;
// the claim age_verified and the MFA outcome become delegator attributes.
func DemoIDPConfig(issuer string) IDPConfig {
	return IDPConfig{Providers: []IDPProvider{{
		Issuer:     issuer,
		Audiences:  []string{"jitid"},
		TokenTypes: []string{TokenTypeIDToken, TokenTypeAccessToken, TokenTypeJWT},
		Mapping: IDPMapping{
			IDPrefix:          "user:",
			EntitlementsClaim: "groups",
			Entitlements: map[string][]string{
				"finance": {"payments:transfer", "payments:read"},
				"staff":   {"tickets:read", "tickets:comment", "tickets:purchase"},
			},
			Attributes:   map[string]string{"age_verified": "age_verified"},
			MFAAttribute: "mfa",
		},
	}}}
}

// WriteIDPConfig writes DemoIDPConfig(issuer) to path as indented JSON.
func WriteIDPConfig(path, issuer string) error {
	b, err := MarshalIDPConfig(DemoIDPConfig(issuer))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// MarshalIDPConfig returns c as the indented JSON written to files.
func MarshalIDPConfig(c IDPConfig) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// files are the client certificate paths the summary and addrs.env name,
// as the user types them (relative to where make run was started).
type files struct {
	ca        string
	cert, key map[string]string
}

func clientFiles(pki devpki.Result) files {
	f := files{ca: pki.CA, cert: map[string]string{}, key: map[string]string{}}
	for name, p := range pki.SVIDs {
		f.cert[name], f.key[name] = p.Cert, p.Key
	}
	return f
}

// grpcurlFlags returns grpcurl's TLS flags to call as identity name.
func (f files) grpcurlFlags(name string) string {
	return fmt.Sprintf("-cacert %s -cert %s -key %s", f.ca, f.cert[name], f.key[name])
}

type summary struct {
	procs            map[string]*launch.Process
	ids              map[string]string
	files            files
	trustDomain      string
	pkiDir           string
	nats, natsNote   string
	redis, redisNote string
	idpURL, idpUsers string
}

func writeSummary(w io.Writer, s summary) {
	admin := func(name string) string { return "http://" + s.procs[name].Addr("admin") + "/metrics" }
	grpc := func(name string) string { return s.procs[name].Addr("grpc") }
	platform, auditor := s.files.grpcurlFlags("platform"), s.files.grpcurlFlags("auditor")
	issue := `{"agent":{"id":"agent:research-1","class":"AGENT_CLASS_EPHEMERAL"},` +
		`"subject_token":"'"$SUBJECT_TOKEN"'","subject_token_type":"` + TokenTypeAccessToken + `",` +
		`"task":{"id":"task-42","purpose":"summarise Q3 tickets","sensitivity":"SENSITIVITY_MEDIUM"},` +
		`"scopes":["tickets:read"],"ttl":"600s"}`
	var b strings.Builder
	fmt.Fprintf(&b, `
jitid is running, every link on mutual TLS. Ctrl-C stops everything.

  issuer  grpc %-16s admin %s
          accepts %s, %s, %s; talks to policy as %s
  policy  grpc %-16s admin %s
          accepts %s, %s
  audit   grpc %-16s admin %s
          accepts %s, %s
  IdP     %s (demo OpenID Provider, users in %s)
  NATS    %s (%s)
  Redis   %s (%s)

Certificates: local CA of trust domain %s in %s (bundle %s); make run renews them.
Client flags (grpcurl: make clients, or go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3):

  as the demo platform %s:
    %s
  as the auditor %s:
    %s
  as the admin %s:
    %s

Try:

  SUBJECT_TOKEN=$(curl -s -u demo-alice:demo-alice-secret -d grant_type=client_credentials -d scope=openid %s/oauth/token | jq -r .access_token)

  grpcurl %s -d '%s' %s jitid.issuer.v1.IssuerService/IssueCredential

  grpcurl %s -d '{"task_id":"task-42","reason":"done"}' %s jitid.issuer.v1.IssuerService/CompleteTask

  grpcurl %s -d '{"filter":{"task_id":"task-42"}}' %s jitid.audit.v1.AuditService/QueryEvents

Watch events: nats --server %s sub 'jitid.events.>'

`,
		grpc("issuer"), admin("issuer"), s.ids["platform"], s.ids["platform-b"], s.ids["admin"], s.ids["policy"],
		grpc("policy"), admin("policy"), s.ids["issuer"], s.ids["admin"],
		grpc("audit"), admin("audit"), s.ids["auditor"], s.ids["admin"],
		s.idpURL, s.idpUsers, s.nats, s.natsNote, s.redis, s.redisNote,
		s.trustDomain, s.pkiDir, s.files.ca,
		s.ids["platform"], platform, s.ids["auditor"], auditor, s.ids["admin"], s.files.grpcurlFlags("admin"),
		s.idpURL,
		platform, issue, grpc("issuer"),
		platform, grpc("issuer"),
		auditor, grpc("audit"),
		s.nats)
	_, _ = io.WriteString(w, b.String())
}
