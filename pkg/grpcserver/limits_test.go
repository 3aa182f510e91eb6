package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/jitid/jitid/pkg/grpcserver"
)

// recordingService keeps every request its UnaryCall receives, as a store
// would.
type recordingService struct {
	testpb.UnimplementedTestServiceServer
	mu   sync.Mutex
	reqs []*testpb.SimpleRequest
}

func (s *recordingService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	return &testpb.SimpleResponse{}, nil
}

func (s *recordingService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *recordingService) received() []*testpb.SimpleRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*testpb.SimpleRequest(nil), s.reqs...)
}

func startRecording(t *testing.T, limits grpcserver.Limits) (*recordingService, started) {
	t.Helper()
	svc := &recordingService{}
	st := startWith(t, grpcserver.Options{Limits: limits}, func(s *grpcserver.Server) {
		testpb.RegisterTestServiceServer(s.GRPC(), svc)
	})
	return svc, st
}

func TestOversizedRequestIsRefused(t *testing.T) {
	svc, st := startRecording(t, grpcserver.Limits{})
	client := testpb.NewTestServiceClient(st.conn)
	big := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, grpcserver.DefaultMaxRequestBytes+1)}}
	_, err := client.UnaryCall(context.Background(), big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request: %v, want ResourceExhausted", err)
	}
	if n := len(svc.received()); n != 0 {
		t.Fatalf("the handler received %d oversized requests, want 0", n)
	}
	// A request within the cap on the same connection is served.
	small := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, grpcserver.DefaultMaxRequestBytes/2)}}
	if _, err := client.UnaryCall(context.Background(), small); err != nil {
		t.Fatalf("request within the cap: %v", err)
	}
}

func TestRequestCapFollowsMaxRequestBytes(t *testing.T) {
	_, st := startRecording(t, grpcserver.Limits{MaxRequestBytes: 1024})
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 2048)}}
	_, err := testpb.NewTestServiceClient(st.conn).UnaryCall(context.Background(), req)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("2 KiB request with a 1 KiB cap: %v, want ResourceExhausted", err)
	}
}

func TestUnknownFieldsAreDroppedBeforeTheHandler(t *testing.T) {
	svc, st := startRecording(t, grpcserver.Limits{})
	// Field 999 is defined neither in SimpleRequest nor in Payload.
	smuggled := protowire.AppendTag(nil, 999, protowire.BytesType)
	smuggled = protowire.AppendBytes(smuggled, []byte("smuggled bytes"))
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ok")}}
	req.ProtoReflect().SetUnknown(smuggled)
	req.Payload.ProtoReflect().SetUnknown(smuggled)
	if _, err := testpb.NewTestServiceClient(st.conn).UnaryCall(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := svc.received()
	if len(got) != 1 {
		t.Fatalf("handler received %d requests, want 1", len(got))
	}
	if u := got[0].ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Errorf("request kept %d bytes of unknown fields", len(u))
	}
	if u := got[0].GetPayload().ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Errorf("nested payload kept %d bytes of unknown fields", len(u))
	}
	if string(got[0].GetPayload().GetBody()) != "ok" {
		t.Errorf("payload body = %q, want the known field kept", got[0].GetPayload().GetBody())
	}
}

// http2Preface is what an HTTP/2 client sends first; the server answers
// with its SETTINGS frame, which shows the connection was accepted.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestConnectionLimitHolds(t *testing.T) {
	_, st := startRecording(t, grpcserver.Limits{MaxConnections: 1})
	hog, err := net.Dial("tcp", st.srv.GRPCAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	if _, err := io.WriteString(hog, http2Preface); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(hog, make([]byte, 9)); err != nil {
		t.Fatalf("first connection not served: %v", err)
	}

	// The one slot is taken: a second client is not served.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = testpb.NewTestServiceClient(st.conn).EmptyCall(ctx, &testpb.Empty{})
	if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Unavailable {
		t.Fatalf("call over the connection limit: %v, want it not served", err)
	}

	// Once the first connection closes, the second is served.
	hog.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testpb.NewTestServiceClient(st.conn).EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("call after the first connection closed: %v", err)
	}
}

func TestClientPingingTooOftenIsDisconnected(t *testing.T) {
	_, st := startRecording(t, grpcserver.Limits{KeepaliveMinTime: time.Hour})
	conn, err := net.Dial("tcp", st.srv.GRPCAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Preface, empty SETTINGS, then PING frames with no call open.
	frames := []byte(http2Preface)
	frames = append(frames, 0, 0, 0, 0x4, 0, 0, 0, 0, 0)
	ping := []byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	for range 5 {
		frames = append(frames, ping...)
	}
	if _, err := conn.Write(frames); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// The server sends GOAWAY and closes: reading reaches EOF (or a
	// reset) long before the deadline.
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a connection that pings with no call open")
	}
}
