// Command policy is jitid's policy decision point: a gRPC service that
// evaluates issuance requests against a Cedar policy set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/services/policy/internal/grpcapi"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/policymetrics"
	"github.com/jitid/jitid/services/policy/policies"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "policy:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.Load(os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	log := cfg.Logger(os.Stderr)
	var set *policy.Set
	if cfg.PolicyFile == "" {
		set, err = policy.LoadFS(policies.Default(), policies.Source)
	} else {
		set, err = policy.Load(cfg.PolicyFile)
	}
	if err != nil {
		return fmt.Errorf("load policy set: %w", err)
	}
	engine := policy.NewEngine(set, policy.EngineOptions{Logger: log})
	srv := grpcserver.New(grpcserver.Options{Name: "policy", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, Logger: log})
	if err := policymetrics.Register(srv.Registry(), engine); err != nil {
		return err
	}
	grpcapi.Register(srv.GRPC(), srv.Health(), grpcapi.New(engine, log))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.PolicyFile != "" {
		go policy.NewReloader(engine, cfg.PolicyFile, cfg.ReloadInterval).Run(ctx)
	}
	return srv.Run(ctx)
}
