package mtls

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// InsecureFlag is the name of the command-line flag that lets a service
// listen without TLS on a non-loopback address.
const InsecureFlag = "insecure"

// ErrPlaintextListen is returned by CheckPlaintextListen for a non-loopback
// address when plaintext was not explicitly allowed.
var ErrPlaintextListen = errors.New("mtls: refusing to listen without TLS on a non-loopback address")

// CheckPlaintextListen is called by a service that is about to listen on addr
// (host:port) without TLS. It returns nil when the host is a loopback address
// ("localhost", 127.0.0.0/8, ::1) or when insecure is set, and otherwise an
// error of one line that names the -insecure flag. An empty host (":50051")
// listens on every interface and so is not loopback; other host names are not
// resolved, since what they resolve to can change after the check.
func CheckPlaintextListen(addr string, insecure bool) error {
	if insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("mtls: listen address %q: %w", addr, err)
	}
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w: %s (configure TLS certificates, or pass -%s to accept plaintext)", ErrPlaintextListen, addr, InsecureFlag)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	// A zone ("::1%lo") does not change whether the address is loopback.
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
