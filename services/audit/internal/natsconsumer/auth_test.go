package natsconsumer_test

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/jitid/jitid/pkg/storeauth"
	"github.com/jitid/jitid/services/audit/internal/natsconsumer"
)

const natsPassword = "nats-audit-pw-5d1e"

// startAuthNATS starts an embedded NATS server that admits only the
// clients opts lists.
func startAuthNATS(t *testing.T, configure func(*natsserver.Options)) string {
	t.Helper()
	o := &natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	configure(o)
	s, err := natsserver.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func writeSecret(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// connectAs connects the way the audit service does, with the options of
// auth, and reports whether the first attempt was admitted.
func connectAs(t *testing.T, url string, auth storeauth.NATS) bool {
	t.Helper()
	if errs := auth.Validate(); len(errs) != 0 {
		t.Fatal(errors.Join(errs...))
	}
	opts, err := auth.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconsumer.Connect(url, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// RetryOnFailedConnect: Connect returns after its first attempt,
	// connected or left retrying.
	return nc.IsConnected()
}

func TestNATSUserConnectsWithThePasswordFileAndIsRefusedWithout(t *testing.T) {
	url := startAuthNATS(t, func(o *natsserver.Options) {
		o.Users = []*natsserver.User{{Username: "audit", Password: natsPassword}}
	})
	if !connectAs(t, url, storeauth.NATS{User: "audit", PasswordFile: writeSecret(t, "pw", []byte(natsPassword+"\n"))}) {
		t.Fatal("user audit with its password file was not admitted")
	}
	if connectAs(t, url, storeauth.NATS{}) {
		t.Fatal("a client without credentials was admitted")
	}
	if _, err := nats.Connect(url); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: %v, want ErrAuthorization", err)
	}
	wrong := storeauth.NATS{User: "audit", PasswordFile: writeSecret(t, "pw", []byte("not-the-password"))}
	if connectAs(t, url, wrong) {
		t.Fatal("a wrong password was admitted")
	}
}

func TestNATSNKeyConnectsWithTheSeedFileAndIsRefusedWithout(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	url := startAuthNATS(t, func(o *natsserver.Options) {
		o.Nkeys = []*natsserver.NkeyUser{{Nkey: pub}}
	})
	if !connectAs(t, url, storeauth.NATS{NKey: writeSecret(t, "audit.nk", seed)}) {
		t.Fatal("the NKey seed file was not admitted")
	}
	if connectAs(t, url, storeauth.NATS{}) {
		t.Fatal("a client without its NKey was admitted")
	}
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	otherSeed, err := other.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if connectAs(t, url, storeauth.NATS{NKey: writeSecret(t, "other.nk", otherSeed)}) {
		t.Fatal("an NKey the server does not know was admitted")
	}
}

// A seed in a file others can read is refused before any connection, and
// the error names the file, never the seed.
func TestNATSSeedFileReadableByOthersIsRefusedWithoutQuotingIt(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	p := writeSecret(t, "audit.nk", seed)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = storeauth.NATS{NKey: p}.Options()
	if err == nil {
		t.Fatal("Options accepted a world-readable seed file")
	}
	if strings.Contains(err.Error(), string(seed)) {
		t.Fatalf("error quotes the seed: %v", err)
	}
}
