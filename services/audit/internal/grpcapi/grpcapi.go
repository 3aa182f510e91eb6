// Package grpcapi is jitid.audit.v1.AuditService over the audit domain:
// it turns requests into domain calls, records into protos, and domain
// errors into gRPC status codes (toStatus).
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/reqrules"
	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
)

// Server implements auditv1.AuditServiceServer.
type Server struct {
	auditv1.UnimplementedAuditServiceServer
	svc     *audit.Service
	log     *slog.Logger
	readers map[string]struct{}
}

// Options configure a Server.
type Options struct {
	// Readers are the callers (grpcserver.Caller) that may read the log:
	// QueryEvents, TailEvents and VerifyLog. The service gives it its
	// auditors and admins. Anyone else is refused PERMISSION_DENIED: the
	// log names every platform's agents, delegators and tasks.
	Readers []string
}

// New returns a Server over svc.
func New(svc *audit.Service, log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.Default()
	}
	readers := make(map[string]struct{}, len(opts.Readers))
	for _, r := range opts.Readers {
		readers[r] = struct{}{}
	}
	// Compiled now, not in the first request's deadline; a failure (a
	// bug in the rules) is returned by every Check as well.
	if err := reqrules.Prepare(); err != nil {
		log.Error("request rules do not compile", "error", err)
	}
	return &Server{svc: svc, log: log, readers: readers}
}

// authorizeRead lets the call through when its caller is a reader. A call
// without a caller (a server wired without authentication) is refused too.
func (s *Server) authorizeRead(ctx context.Context) error {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return statusreason.Error(codes.Unauthenticated, "no authenticated caller: reading the audit log needs an auditor identity", statusreason.Unauthenticated, nil)
	}
	if _, ok := s.readers[caller]; !ok {
		return statusreason.Error(codes.PermissionDenied,
			fmt.Sprintf("caller %s may not read the audit log: only auditors (-auditors) and admins (-admins) may", caller),
			statusreason.CallerNotAllowed, map[string]string{"caller": caller})
	}
	return nil
}

// Register adds the AuditService to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { auditv1.RegisterAuditServiceServer(r, s) }

// QueryEvents returns one page of recorded events, oldest first.
func (s *Server) QueryEvents(ctx context.Context, req *auditv1.QueryEventsRequest) (*auditv1.QueryEventsResponse, error) {
	if err := s.authorizeRead(ctx); err != nil {
		return nil, err
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(err)
	}
	f, err := toFilter(req.GetFilter())
	if err != nil {
		return nil, s.toStatus(err)
	}
	page, err := s.svc.QueryEvents(ctx, audit.PageRequest{Filter: f, PageSize: pageSize(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &auditv1.QueryEventsResponse{
		Records:       make([]*auditv1.AuditRecord, 0, len(page.Records)),
		NextPageToken: page.NextPageToken,
	}
	for i := range page.Records {
		r, err := toProto(&page.Records[i])
		if err != nil {
			return nil, s.toStatus(err)
		}
		resp.Records = append(resp.Records, r)
	}
	return resp, nil
}

// TailStartHeader is the response header of TailEvents carrying the
// sequence the tail starts after; it is sent before any record.
const TailStartHeader = "jitid-tail-after"

// TailEvents streams matching records after after_sequence, then new
// ones as they are recorded, until the client goes away.
func (s *Server) TailEvents(req *auditv1.TailEventsRequest, stream grpc.ServerStreamingServer[auditv1.TailEventsResponse]) error {
	if err := s.authorizeRead(stream.Context()); err != nil {
		return err
	}
	if err := reqrules.Check(req); err != nil {
		return s.toStatus(err)
	}
	f, err := toFilter(req.GetFilter())
	if err != nil {
		return s.toStatus(err)
	}
	// The response header says where the tail starts (TailStartHeader), so
	// that a client of a from-now tail knows when it is listening.
	started := func(after int64) error {
		return stream.SendHeader(metadata.Pairs(TailStartHeader, strconv.FormatInt(after, 10)))
	}
	err = s.svc.Tail(stream.Context(), f, req.GetAfterSequence(), started, func(r *audit.Record) error {
		pr, err := toProto(r)
		if err != nil {
			return err
		}
		return stream.Send(&auditv1.TailEventsResponse{Record: pr})
	})
	return s.toStatus(err)
}

// VerifyLog walks the hash chain and names the first bad record.
func (s *Server) VerifyLog(ctx context.Context, _ *auditv1.VerifyLogRequest) (*auditv1.VerifyLogResponse, error) {
	if err := s.authorizeRead(ctx); err != nil {
		return nil, err
	}
	v, err := s.svc.Verify(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if !v.OK {
		s.log.Warn("audit log failed verification", "first_bad_sequence", v.FirstBad, "problem", v.Problem)
	}
	return &auditv1.VerifyLogResponse{Ok: v.OK, RecordsChecked: v.Checked, FirstBadSequence: v.FirstBad, Problem: v.Problem}, nil
}

// errBadRequest reports a request field that is malformed before it
// reaches the domain (an invalid timestamp).
var errBadRequest = errors.New("invalid request")

// errUndecodable reports a stored record whose event bytes do not decode:
// the store is damaged, and VerifyLog will say where.
var errUndecodable = errors.New("stored record cannot be decoded")

func toFilter(f *auditv1.EventFilter) (audit.Filter, error) {
	out := audit.Filter{
		TaskID:       f.GetTaskId(),
		AgentID:      f.GetAgentId(),
		DelegatorID:  f.GetDelegatorId(),
		CredentialID: f.GetCredentialId(),
		Types:        f.GetTypes(),
	}
	var err error
	if out.Start, err = toTime("filter.start_time", f.GetStartTime()); err != nil {
		return audit.Filter{}, err
	}
	if out.End, err = toTime("filter.end_time", f.GetEndTime()); err != nil {
		return audit.Filter{}, err
	}
	return out, nil
}

func toTime(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %v", errBadRequest, field, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail
	}
	return ts.AsTime(), nil
}

func toProto(r *audit.Record) (*auditv1.AuditRecord, error) {
	ev, err := r.DecodeEvent()
	if err != nil {
		return nil, fmt.Errorf("%w: record %d: %v", errUndecodable, r.Sequence, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail
	}
	return &auditv1.AuditRecord{
		Sequence:   r.Sequence,
		Event:      ev,
		RecordTime: timestamppb.New(r.RecordedAt),
		PrevHash:   r.PrevHash,
		Hash:       r.Hash,
	}, nil
}

// pageSize coerces a requested page size as AIP-158 asks: above the
// largest page it is the largest page, not an error. Negative sizes were
// refused by reqrules; zero is the domain's default.
func pageSize(n int32) int {
	return min(int(n), audit.MaxPageSize)
}

// toStatus maps every error of this service to a gRPC status carrying an
// ErrorInfo whose reason (package statusreason) tells the cases apart.
// Domain messages are written for the caller and sent as they are;
// anything unknown is logged and becomes a generic INTERNAL, so that no
// storage detail leaks to clients.
//
//	*reqrules.Error           INVALID_ARGUMENT   INVALID_REQUEST; BadRequest lists every field
//	invalid filter, page size,
//	page token, sequence      INVALID_ARGUMENT   INVALID_REQUEST
//	undecodable record        DATA_LOSS          RECORD_UNDECODABLE
//	context ended             CANCELED / DEADLINE_EXCEEDED
//	ErrStoreUnavailable       UNAVAILABLE        STORE_UNAVAILABLE
//	a status already          itself             (a send on a stream whose client is gone)
//	anything else             INTERNAL           generic message
func (s *Server) toStatus(err error) error {
	var rules *reqrules.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rules):
		br := &errdetails.BadRequest{}
		for _, v := range rules.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return statusreason.Error(codes.InvalidArgument, rules.Error(), statusreason.InvalidRequest, nil, br)
	case errors.Is(err, audit.ErrInvalidFilter), errors.Is(err, audit.ErrInvalidPageSize),
		errors.Is(err, audit.ErrInvalidPageToken), errors.Is(err, audit.ErrInvalidSequence),
		errors.Is(err, errBadRequest):
		return statusreason.Error(codes.InvalidArgument, err.Error(), statusreason.InvalidRequest, nil)
	case errors.Is(err, errUndecodable):
		s.log.Error("audit record cannot be decoded", "error", err)
		return statusreason.Error(codes.DataLoss, err.Error()+"; run VerifyLog", statusreason.RecordUndecodable, nil)
	case errors.Is(err, context.Canceled):
		return statusreason.Error(codes.Canceled, "canceled", statusreason.Canceled, nil)
	case errors.Is(err, context.DeadlineExceeded):
		return statusreason.Error(codes.DeadlineExceeded, "deadline exceeded", statusreason.DeadlineExceeded, nil)
	case errors.Is(err, audit.ErrStoreUnavailable):
		s.log.Error("audit store unavailable", "error", err)
		return statusreason.Error(codes.Unavailable, "audit log store unavailable; retry later", statusreason.StoreUnavailable, nil)
	}
	// A send on a stream whose client is gone already carries a status.
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	s.log.Error("audit request failed", "error", err)
	return statusreason.Error(codes.Internal, "internal error", statusreason.Internal, nil)
}
