// Command audit is jitid's audit service: it consumes lifecycle events from
// NATS JetStream into a hash-chained log and serves AuditService (query,
// tail, verify) over gRPC. Flags and JITID_* variables are described in
// docs/configuration.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/grpcserver"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/config"
	"github.com/jitid/jitid/services/audit/internal/grpcapi"
	"github.com/jitid/jitid/services/audit/internal/natsconsumer"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)

	st, err := sqlstore.Open(cfg.AuditDSN)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }() // at exit: nothing left to report it to
	svc := audit.New(st, audit.Options{Logger: log})

	srv := grpcserver.New(grpcserver.Options{Name: "audit", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, Pprof: cfg.Pprof, Logger: log})
	grpcapi.New(svc, log).Register(srv.GRPC())
	setServing(srv, healthpb.HealthCheckResponse_NOT_SERVING)

	nc, err := natsconsumer.Connect(cfg.NATSURL, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	consumer, err := natsconsumer.New(js, svc, natsconsumer.Options{
		Bus: cfg.EventBus(), Durable: cfg.Consumer, AckWait: cfg.AckWait, Logger: log, Registerer: srv.Registry(),
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		// The server answers (NOT_SERVING) while the store comes up; the
		// consumer starts only once there is somewhere to put events.
		if err := st.InitRetry(ctx, log, 5*time.Second); err != nil {
			return
		}
		log.Info("audit store open", "backend", st.Backend())
		setServing(srv, healthpb.HealthCheckResponse_SERVING)
		_ = consumer.Run(ctx)
	})
	err = srv.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

func setServing(srv *grpcserver.Server, s healthpb.HealthCheckResponse_ServingStatus) {
	srv.Health().SetServingStatus("", s)
	srv.Health().SetServingStatus(auditv1.AuditService_ServiceDesc.ServiceName, s)
}
