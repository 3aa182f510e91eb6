package launch_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/testkit/launch"
)

func TestServingLineReadsTheBoundAddressesInBothLogFormats(t *testing.T) {
	t.Parallel()
	want := map[string]string{"msg": "serving", "grpc": "127.0.0.1:41234", "admin": "127.0.0.1:41235"}
	tests := []struct {
		name string
		line string
		want map[string]string
	}{
		{"json", `{"time":"2026-12-04T16:00:00Z","level":"INFO","msg":"serving","grpc":"127.0.0.1:41234","admin":"127.0.0.1:41235"}`, want},
		{"text", `time=2026-12-04T16:00:00.000Z level=INFO msg=serving grpc=127.0.0.1:41234 admin=127.0.0.1:41235`, want},
		{"text, quoted", `time=2026-12-04T16:00:00.000Z level=INFO msg="serving" grpc=127.0.0.1:41234 admin="127.0.0.1:41235"`, want},
		{"another message", `{"level":"INFO","msg":"stopped"}`, nil},
		{"not a log line", `panic: boom`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := launch.ServingLine([]byte(tt.line))
			if ok != (tt.want != nil) {
				t.Fatalf("ServingLine(%q) ok = %v, want %v", tt.line, ok, tt.want != nil)
			}
			if !ok {
				return
			}
			delete(got, "time")
			delete(got, "level")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ServingLine(%q) (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}
