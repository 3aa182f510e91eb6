package natsconsumer_test

import (
	"testing"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/jitid/jitid/pkg/storeauth"
)

// operatorUser returns a .creds file content for a new user of a new
// account, and the server options that trust its operator.
func operatorUser(t *testing.T) (creds []byte, configure func(*natsserver.Options)) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, err := op.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opPub)
	_, err = oc.Encode(op)
	must(err)
	acc, err := nkeys.CreateAccount()
	must(err)
	accPub, err := acc.PublicKey()
	must(err)
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(op)
	must(err)
	user, err := nkeys.CreateUser()
	must(err)
	userPub, err := user.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
	must(err)
	seed, err := user.Seed()
	must(err)
	creds, err = jwt.FormatUserConfig(userJWT, seed)
	must(err)
	resolver := &natsserver.MemAccResolver{}
	must(resolver.Store(accPub, accJWT))
	return creds, func(o *natsserver.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
	}
}

func TestNATSCredsFileConnectsAndIsRefusedWithout(t *testing.T) {
	creds, configure := operatorUser(t)
	url := startAuthNATS(t, configure)
	if !connectAs(t, url, storeauth.NATS{Creds: writeSecret(t, "audit.creds", creds)}) {
		t.Fatal("the .creds file was not admitted")
	}
	if connectAs(t, url, storeauth.NATS{}) {
		t.Fatal("a client without credentials was admitted")
	}
	other, _ := operatorUser(t)
	if connectAs(t, url, storeauth.NATS{Creds: writeSecret(t, "other.creds", other)}) {
		t.Fatal("a user of an operator the server does not trust was admitted")
	}
}
