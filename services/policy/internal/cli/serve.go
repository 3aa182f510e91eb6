package cli

import (
	"context"

	"github.com/jitid/jitid/services/policy/internal/app"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// loadSet loads the set the tools work on, as the service does.
func loadSet(path string) (*policy.Set, error) { return app.LoadSet(path) }

// serve runs the policy service, built like the issuer and audit: config,
// then the composition root (app), then Run.
func serve(ctx context.Context, env Env, args []string) error {
	cfg, err := config.Load(args, env.lookupEnv(), env.Stderr)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, cfg.Logger(env.Stderr))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
