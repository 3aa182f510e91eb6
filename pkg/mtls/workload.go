package mtls

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// WorkloadConfig says where and how to fetch SVIDs from the SPIFFE Workload
// API.
type WorkloadConfig struct {
	// Addr is the Workload API endpoint, "unix:///run/spire/agent.sock";
	// when empty, the SPIFFE_ENDPOINT_SOCKET environment variable.
	Addr string
	// ID picks the SVID to present when the agent gives the workload several
	// (one registration entry per service on a shared uid, say). When zero
	// the agent's first SVID is used. When set and the agent does not give
	// the workload that ID, the source has no SVID and every handshake
	// fails, rather than presenting another identity.
	ID spiffeid.ID
}

// NewWorkloadSource connects to the Workload API and waits, up to ctx's
// deadline, for the SVID (cfg.ID's, if set) and bundles. The returned source follows the
// agent's rotations until it is closed.
func NewWorkloadSource(ctx context.Context, cfg WorkloadConfig) (*workloadapi.X509Source, error) {
	var opts []workloadapi.X509SourceOption
	if cfg.Addr != "" {
		opts = append(opts, workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.Addr)))
	}
	if !cfg.ID.IsZero() {
		want := cfg.ID
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return nil
		}))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("mtls: workload API: %w", err)
	}
	// An entry registered a moment ago may reach the agent after the first
	// update, so a missing ID is waited for as long as ctx allows.
	for {
		_, err := src.GetX509SVID()
		if err == nil {
			return src, nil
		}
		select {
		case <-src.Updated():
		case <-ctx.Done():
			_ = src.Close() // the missing SVID is the error worth reporting
			return nil, fmt.Errorf("mtls: workload API gave no SVID %s: %w", cfg.ID, err)
		}
	}
}
