package mtls_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jitid/jitid/pkg/mtls"
)

func TestPlaintextRefusedOffLoopbackWithoutInsecureFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr     string
		insecure bool
		refused  bool
	}{
		{"127.0.0.1:50051", false, false},
		{"127.1.2.3:50051", false, false},
		{"[::1]:50051", false, false},
		{"localhost:50051", false, false},
		{"0.0.0.0:50051", false, true},
		{":50051", false, true},
		{"[::]:50051", false, true},
		{"10.0.0.7:50051", false, true},
		{"issuer.internal:50051", false, true},
		{"0.0.0.0:50051", true, false},
		{":50051", true, false},
	}
	for _, tt := range tests {
		err := mtls.CheckPlaintextListen(tt.addr, tt.insecure)
		if !tt.refused {
			if err != nil {
				t.Errorf("CheckPlaintextListen(%q, insecure=%v): %v", tt.addr, tt.insecure, err)
			}
			continue
		}
		if !errors.Is(err, mtls.ErrPlaintextListen) {
			t.Errorf("CheckPlaintextListen(%q, insecure=%v): got %v, want ErrPlaintextListen", tt.addr, tt.insecure, err)
			continue
		}
		// The operator reads this line in a crash log: one line, naming the
		// flag that would allow it.
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "-"+mtls.InsecureFlag) {
			t.Errorf("CheckPlaintextListen(%q) error %q: want one line naming -%s", tt.addr, msg, mtls.InsecureFlag)
		}
	}
}

func TestPlaintextListenRejectsMalformedAddress(t *testing.T) {
	t.Parallel()
	if err := mtls.CheckPlaintextListen("127.0.0.1", false); err == nil {
		t.Error("an address without a port was accepted")
	}
}
