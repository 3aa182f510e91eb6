package statusreason_test

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/statusreason"
)

func TestErrorCarriesTheReasonAndTheDetails(t *testing.T) {
	t.Parallel()
	err := statusreason.Error(codes.InvalidArgument, "bad", statusreason.InvalidRequest, map[string]string{"k": "v"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "a"}, {Field: "b"}}})
	if status.Code(err) != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
		t.Errorf("Error = %v, reason %q", err, statusreason.Of(err))
	}
	if fvs := statusreason.BadRequest(err); len(fvs) != 2 || fvs[0].GetField() != "a" || fvs[1].GetField() != "b" {
		t.Errorf("BadRequest = %v; want a and b", fvs)
	}
}

func TestOfIgnoresOtherDomainsAndPlainErrors(t *testing.T) {
	t.Parallel()
	st, _ := status.New(codes.Unavailable, "x").WithDetails(&errdetails.ErrorInfo{Reason: "POLICY_UNAVAILABLE", Domain: "example.com"})
	for _, err := range []error{st.Err(), status.Error(codes.Unavailable, "x"), errors.New("x"), nil} {
		if got := statusreason.Of(err); got != "" {
			t.Errorf("Of(%v) = %q; want none", err, got)
		}
	}
}
