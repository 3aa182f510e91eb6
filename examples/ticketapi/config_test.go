package main

import (
	"io"
	"testing"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr bool
	}{
		{name: "defaults need mTLS or -insecure", wantErr: true},
		{name: "mTLS", args: []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-bundle", "b.pem", "-issuer-id", "spiffe://jitid.local/issuer"}},
		{name: "mTLS without the issuer's id", args: []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-bundle", "b.pem"}, wantErr: true},
		{name: "mTLS files in part", args: []string{"-tls-cert", "c.pem", "-issuer-id", "spiffe://jitid.local/issuer"}, wantErr: true},
		{name: "mTLS and -insecure", args: []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-bundle", "b.pem", "-issuer-id", "spiffe://jitid.local/issuer", "-insecure"}, wantErr: true},
		{name: "plaintext on request", args: []string{"-insecure"}},
		{name: "env sets the JWKS URL", args: []string{"-insecure"}, env: map[string]string{"JITID_JWKS_URL": "http://127.0.0.1:9091/.well-known/jwks.json"}},
		{name: "JWKS URL not a URL", args: []string{"-jwks-url", "jwks.json"}, wantErr: true},
		{name: "JWKS URL and discovery", args: []string{"-jwks-url", "http://a/j", "-discover-from", "http://a"}, wantErr: true},
		{name: "no audience", args: []string{"-audience", ""}, wantErr: true},
		{name: "bad log level", env: map[string]string{"JITID_LOG_LEVEL": "loud"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseConfig() error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
