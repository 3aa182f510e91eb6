package grpcserver

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
)

// Authenticator is the authentication step of the interceptor chain: it
// returns the context the handler sees (carrying the caller) or a status
// error, Unauthenticated for no or bad credentials. It never sees health
// or reflection calls, which probes and grpcurl make without credentials.
type Authenticator func(ctx context.Context) (context.Context, error)

// Log keys shared by every line the chain writes, so that one query finds
// the errors and latencies of all three services.
const (
	logKeyError    = "error"
	logKeyDuration = "duration_ms"
)

// handlingBuckets spans a Redis round trip (0.5 ms) to a policy timeout
// and more (2.5 s).
var handlingBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// newServerMetrics returns the standard grpc_server_* metrics
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds, ...) that stock dashboards chart.
func newServerMetrics() *grpcprom.ServerMetrics {
	return grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(handlingBuckets)))
}

// chain returns the one interceptor chain of every jitid server, outermost
// first: metrics (so they count what the caller saw), the caller slot
// (with auth only, so that the log line names the caller), logging, auth
// and then the per-caller rate limit (both skipped for health and
// reflection), recovery (so a panic is logged and counted as the Internal
// the caller receives), and innermost the removal of unknown fields from
// every request, so that no handler stores them. limiter may be nil.
func chain(log *slog.Logger, metrics *grpcprom.ServerMetrics, authn Authenticator, limiter *callerLimiter) []grpc.ServerOption {
	logger := logging.LoggerFunc(func(ctx context.Context, level logging.Level, msg string, fields ...any) {
		// The library writes the status as "grpc.error"; the "error" key
		// (the status message alone) replaces it.
		attrs := make([]any, 0, len(fields))
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i] == "grpc.error" {
				continue
			}
			attrs = append(attrs, fields[i], fields[i+1])
		}
		if caller, ok := loggedCaller(ctx); ok {
			attrs = append(attrs, logKeyCaller, caller)
		}
		log.Log(ctx, slog.Level(level), msg, attrs...)
	})
	logOpts := []logging.Option{
		// Only the end of a call: requests and responses may hold tokens,
		// which never reach a log.
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(callLevel),
		logging.WithDisableLoggingFields(logging.ComponentFieldKey, logging.MethodTypeFieldKey),
		logging.WithDurationField(func(d time.Duration) logging.Fields {
			return logging.Fields{logKeyDuration, float64(d.Microseconds()) / 1000}
		}),
		logging.WithErrorFields(func(err error) logging.Fields {
			return logging.Fields{logKeyError, status.Convert(err).Message()}
		}),
	}
	// Probes call health every few seconds: counted, not logged.
	notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})

	unary := []grpc.UnaryServerInterceptor{metrics.UnaryServerInterceptor()}
	stream := []grpc.StreamServerInterceptor{metrics.StreamServerInterceptor()}
	if authn != nil {
		unary = append(unary, unaryCallerSlot)
		stream = append(stream, streamCallerSlot)
	}
	unary = append(unary, selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(logger, logOpts...), notHealth))
	stream = append(stream, selector.StreamServerInterceptor(logging.StreamServerInterceptor(logger, logOpts...), notHealth))
	if authn != nil {
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(auth.AuthFunc(authn)), selector.MatchFunc(needsAuth)))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(auth.AuthFunc(authn)), selector.MatchFunc(needsAuth)))
	}
	if limiter != nil {
		unary = append(unary, selector.UnaryServerInterceptor(limiter.unary, selector.MatchFunc(needsAuth)))
		stream = append(stream, selector.StreamServerInterceptor(limiter.stream, selector.MatchFunc(needsAuth)))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(recoverOpt), unaryDropUnknown)
	stream = append(stream, recovery.StreamServerInterceptor(recoverOpt), streamDropUnknown)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}

// needsAuth is false for the services anyone may call: health (probes) and
// reflection (it describes the API, never data).
func needsAuth(_ context.Context, c interceptors.CallMeta) bool {
	switch c.Service {
	case healthpb.Health_ServiceDesc.ServiceName,
		reflectionpb.ServerReflection_ServiceDesc.ServiceName,
		reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName:
		return false
	}
	return true
}

// callLevel keeps successful calls at debug (one line per call would drown
// the rest at load), caller errors at info and server faults at error.
func callLevel(code codes.Code) logging.Level {
	switch code {
	case codes.OK, codes.Canceled:
		return logging.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return logging.LevelError
	default:
		return logging.LevelInfo
	}
}
