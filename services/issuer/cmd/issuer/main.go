// Command issuer serves jitid.issuer.v1.IssuerService: it asks policy,
// mints task-scoped credentials, keeps them in Redis with their lifecycle
// events in an outbox, relays the events to NATS JetStream and reports
// expiries. Flags and JITID_* variables: docs/configuration.md.
package main

import (
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/issuer/internal/app"
)

func main() { servicecmd.Main(app.Name, app.Main) }
