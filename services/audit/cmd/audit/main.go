// Command audit is jitid's audit service: it consumes lifecycle events from
// NATS JetStream into a hash-chained log and serves AuditService (query,
// tail, verify) over gRPC. Flags and JITID_* variables are described in
// docs/configuration.md.
package main

import (
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/audit/internal/app"
)

func main() { servicecmd.Main(app.Name, app.Main) }
