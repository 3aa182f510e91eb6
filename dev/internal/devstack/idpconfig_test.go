package devstack_test

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/dev/internal/devstack"
)

var update = flag.Bool("update", false, "rewrite dev/compose/idp.json")

// TestComposeIDPConfigIsTheDemoConfiguration: docker-compose.yml mounts
// dev/compose/idp.json as the issuer's -idp-config; it is what make run
// writes, for the provider's compose address.
func TestComposeIDPConfigIsTheDemoConfiguration(t *testing.T) {
	t.Parallel()
	const path = "../../compose/idp.json"
	want, err := devstack.MarshalIDPConfig(devstack.DemoIDPConfig("http://idp:9400"))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil { //nolint:gosec // G306: a configuration file in the repository
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the demo configuration (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

// TestDemoIDPConfigHasTheIssuersShape: the keys the issuer's -idp-config
// parses (snake_case of its Provider and Mapping fields).
func TestDemoIDPConfigHasTheIssuersShape(t *testing.T) {
	t.Parallel()
	b, err := devstack.MarshalIDPConfig(devstack.DemoIDPConfig("http://127.0.0.1:9400"))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{
  "providers": [
    {
      "issuer": "http://127.0.0.1:9400",
      "audiences": [
        "jitid"
      ],
      "token_types": [
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:jwt"
      ],
      "mapping": {
        "id_prefix": "user:",
        "entitlements_claim": "groups",
        "entitlements": {
          "finance": [
            "payments:transfer",
            "payments:read"
          ],
          "staff": [
            "tickets:read",
            "tickets:comment",
            "tickets:purchase"
          ]
        },
        "attributes": {
          "age_verified": "age_verified"
        },
        "mfa_attribute": "mfa"
      }
    }
  ]
}
`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("demo IdP configuration (-want +got):\n%s", diff)
	}
}
