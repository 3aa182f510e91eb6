// Package authzen serves the OpenID AuthZEN Authorization API 1.0 access
// evaluation endpoints over the policy engine (POST /access/v1/evaluation,
// and POST /access/v1/evaluations for batches, §7), so that enforcement
// points other than the issuer can ask the same policy.
//
// The AuthZEN request maps onto jitid's model as follows:
//
//	subject   {type: "agent", id, properties: {class, platform, attributes,
//	           agent_chain: [{id, class, platform, attributes, held_scopes}]}}
//	action    {name: <scope>}
//	resource  {type: "task", id, properties: {purpose, sensitivity, deadline}}
//	context   {delegator: {id, attributes, entitlements, time_zone,
//	           authenticated_at}, ttl ("15m" or seconds), audience, time
//	           (admins only), platform, delegator_asserted}
//
// The response is {"decision": bool, "context": {...}} with the decision
// id, policy version, deciding policies, reasons (reason_admin and
// reason_user as the spec's examples show), max_ttl, profile and
// obligations. An enforcement point that allows must meet the obligations.
//
// A batch has optional top-level subject, action, resource and context,
// the defaults, and `evaluations`, each of which replaces the defaults it
// names; options.evaluations_semantic is execute_all (the default: one
// answer per evaluation, in order), deny_on_first_deny or
// permit_on_first_permit (answers in order up to and including the first
// deny, or permit). An evaluation that is not a valid request is a deny
// with context.error {status: 400, message}, and counts as a deny. Without
// evaluations the request is a single evaluation and so is the answer.
package authzen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/jitid/jitid/services/policy/internal/access"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// EvaluationPath is the AuthZEN access evaluation endpoint.
const EvaluationPath = "/access/v1/evaluation"

// EvaluationsPath is the AuthZEN access evaluations (batch) endpoint.
const EvaluationsPath = "/access/v1/evaluations"

// MaxEvaluations bounds a batch: each evaluation is one decision.
const MaxEvaluations = 64

// MetadataPath is the AuthZEN PDP metadata document.
const MetadataPath = "/.well-known/authzen-configuration"

// maxBody bounds a request body; a request is a few hundred bytes.
const maxBody = 1 << 20

type evaluator interface {
	Evaluate(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// Handler serves the AuthZEN endpoints.
type Handler struct {
	engine evaluator
	log    *slog.Logger
	mux    *http.ServeMux
	rules  access.Rules
	caller func(*http.Request) (string, bool)
}

// Options configure a Handler.
type Options struct {
	// Rules say who may evaluate and who may set the time.
	Rules access.Rules
	// Caller returns the authenticated caller of a request; PeerCaller
	// (the verified client certificate's SPIFFE ID) when nil.
	Caller func(*http.Request) (string, bool)
}

// PeerCaller is the SPIFFE ID of the client certificate r's TLS handshake
// verified (mtls.ServerTLSConfig checks the chain against the trust bundle
// and the ID against the allow-list before any handler runs); false on a
// plain HTTP connection.
func PeerCaller(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return "", false
	}
	return id.String(), true
}

// New returns a Handler deciding with engine.
func New(engine *policy.Engine, log *slog.Logger, opts Options) *Handler {
	if log == nil {
		log = slog.Default()
	}
	if opts.Caller == nil {
		opts.Caller = PeerCaller
	}
	h := &Handler{engine: engine, log: log, mux: http.NewServeMux(), rules: opts.Rules, caller: opts.Caller}
	h.mux.HandleFunc("POST "+EvaluationPath, h.evaluation)
	h.mux.HandleFunc("POST "+EvaluationsPath, h.evaluations)
	h.mux.HandleFunc("GET "+MetadataPath, h.metadata)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Entity is an AuthZEN subject or resource.
type Entity struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// Action is an AuthZEN action.
type Action struct {
	Name       string          `json:"name"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// EvaluationRequest is the body of POST /access/v1/evaluation.
type EvaluationRequest struct {
	Subject  Entity          `json:"subject"`
	Action   Action          `json:"action"`
	Resource Entity          `json:"resource"`
	Context  json.RawMessage `json:"context,omitempty"`
}

// EvaluationResponse is its answer.
type EvaluationResponse struct {
	Decision bool            `json:"decision"`
	Context  ResponseContext `json:"context"`
}

// ResponseContext carries jitid's decision details.
type ResponseContext struct {
	ID            string            `json:"id"`
	PolicyVersion string            `json:"policy_version"`
	Policies      []string          `json:"policies,omitempty"`
	Reasons       []string          `json:"reasons,omitempty"`
	ReasonAdmin   map[string]string `json:"reason_admin,omitempty"`
	ReasonUser    map[string]string `json:"reason_user,omitempty"`
	MaxTTL        string            `json:"max_ttl,omitempty"`
	Profile       string            `json:"profile,omitempty"`
	Obligations   []string          `json:"obligations,omitempty"`
	// DelegatorUnproven: the delegator was asserted by a platform no
	// policy lets assert; send the delegator's token instead.
	DelegatorUnproven bool `json:"delegator_unproven,omitempty"`
	// Error says why one evaluation of a batch could not be decided.
	Error *EvaluationError `json:"error,omitempty"`
}

// EvaluationError is an evaluation of a batch that is not a valid request.
type EvaluationError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// EvaluationsRequest is the body of POST /access/v1/evaluations.
type EvaluationsRequest struct {
	Subject     *Entity          `json:"subject,omitempty"`
	Action      *Action          `json:"action,omitempty"`
	Resource    *Entity          `json:"resource,omitempty"`
	Context     json.RawMessage  `json:"context,omitempty"`
	Evaluations []EvaluationItem `json:"evaluations,omitempty"`
	Options     struct {
		EvaluationsSemantic string `json:"evaluations_semantic,omitempty"`
	} `json:"options,omitzero"`
}

// EvaluationItem is one evaluation of a batch; what it names replaces the
// batch's default.
type EvaluationItem struct {
	Subject  *Entity         `json:"subject,omitempty"`
	Action   *Action         `json:"action,omitempty"`
	Resource *Entity         `json:"resource,omitempty"`
	Context  json.RawMessage `json:"context,omitempty"`
}

// EvaluationsResponse answers a batch.
type EvaluationsResponse struct {
	Evaluations []EvaluationResponse `json:"evaluations"`
}

// The evaluations semantics of AuthZEN 1.0 §7.1.2.
const (
	ExecuteAll          = "execute_all"
	DenyOnFirstDeny     = "deny_on_first_deny"
	PermitOnFirstPermit = "permit_on_first_permit"
)

type agentProps struct {
	Class      string            `json:"class"`
	Platform   string            `json:"platform"`
	Attributes map[string]string `json:"attributes"`
	AgentChain []chainAgent      `json:"agent_chain"`
}

type chainAgent struct {
	ID         string            `json:"id"`
	Class      string            `json:"class"`
	Platform   string            `json:"platform"`
	Attributes map[string]string `json:"attributes"`
	HeldScopes *[]string         `json:"held_scopes"`
}

type taskProps struct {
	Purpose     string    `json:"purpose"`
	Sensitivity string    `json:"sensitivity"`
	Deadline    time.Time `json:"deadline"`
}

type requestContext struct {
	Delegator struct {
		ID              string            `json:"id"`
		Attributes      map[string]string `json:"attributes"`
		Entitlements    []string          `json:"entitlements"`
		TimeZone        string            `json:"time_zone"`
		AuthenticatedAt time.Time         `json:"authenticated_at"`
	} `json:"delegator"`
	TTL      json.RawMessage `json:"ttl"`
	Audience string          `json:"audience"`
	Time     time.Time       `json:"time"`
	// Platform and DelegatorAsserted are the EvaluateRequest fields of the
	// same names: the platform the enforcement point acts for, and whether
	// it vouches for the delegator without a token.
	Platform          string `json:"platform"`
	DelegatorAsserted bool   `json:"delegator_asserted"`
}

// errBadRequest is wrapped by every mapping error: the caller's fault.
var errBadRequest = errors.New("bad request")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func decodeProps(raw json.RawMessage, v any, what string) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return badf("%s: %v", what, err)
	}
	return nil
}

var classes = map[string]policy.AgentClass{"": policy.AgentClassUnspecified, "UNSPECIFIED": policy.AgentClassUnspecified,
	"EPHEMERAL": policy.AgentClassEphemeral, "RECURRING": policy.AgentClassRecurring}

var sensitivities = map[string]policy.Sensitivity{"LOW": policy.SensitivityLow, "MEDIUM": policy.SensitivityMedium,
	"HIGH": policy.SensitivityHigh, "CRITICAL": policy.SensitivityCritical}

// ToRequest maps an AuthZEN request onto a policy.Request.
func ToRequest(in *EvaluationRequest) (policy.Request, error) {
	var req policy.Request
	if in.Subject.Type != "agent" {
		return req, badf(`subject.type %q: want "agent"`, in.Subject.Type)
	}
	if in.Resource.Type != "task" {
		return req, badf(`resource.type %q: want "task"`, in.Resource.Type)
	}
	var ap agentProps
	if err := decodeProps(in.Subject.Properties, &ap, "subject.properties"); err != nil {
		return req, err
	}
	class, ok := classes[ap.Class]
	if !ok {
		return req, badf("subject.properties.class %q: want EPHEMERAL or RECURRING", ap.Class)
	}
	req.Agent = policy.Agent{ID: in.Subject.ID, Class: class, Platform: ap.Platform, Attributes: ap.Attributes}
	for i, a := range ap.AgentChain {
		c, ok := classes[a.Class]
		if !ok {
			return req, badf("subject.properties.agent_chain[%d].class %q: want EPHEMERAL or RECURRING", i, a.Class)
		}
		req.AgentChain = append(req.AgentChain, policy.Agent{ID: a.ID, Class: c, Platform: a.Platform, Attributes: a.Attributes})
		if a.HeldScopes != nil {
			if req.AgentChainScopes == nil {
				req.AgentChainScopes = make([][]string, len(ap.AgentChain))
			}
			req.AgentChainScopes[i] = append([]string{}, *a.HeldScopes...)
		}
	}
	for i := range req.AgentChainScopes {
		if req.AgentChainScopes[i] == nil {
			return req, badf("subject.properties.agent_chain[%d].held_scopes: give it for every agent of the chain or none", i)
		}
	}
	var tp taskProps
	if err := decodeProps(in.Resource.Properties, &tp, "resource.properties"); err != nil {
		return req, err
	}
	sens, ok := sensitivities[tp.Sensitivity]
	if !ok {
		return req, badf("resource.properties.sensitivity %q: want LOW, MEDIUM, HIGH or CRITICAL", tp.Sensitivity)
	}
	req.Task = policy.Task{ID: in.Resource.ID, Purpose: tp.Purpose, Sensitivity: sens, Deadline: tp.Deadline}
	req.Scopes = []string{in.Action.Name}
	var rc requestContext
	if err := decodeProps(in.Context, &rc, "context"); err != nil {
		return req, err
	}
	d := rc.Delegator
	req.Delegator = policy.Delegator{ID: d.ID, Attributes: d.Attributes, Entitlements: d.Entitlements,
		TimeZone: d.TimeZone, AuthenticatedAt: d.AuthenticatedAt}
	ttl, err := parseTTL(rc.TTL)
	if err != nil {
		return req, err
	}
	req.TTL = ttl
	req.Audience = rc.Audience
	req.Time = rc.Time
	req.Platform = rc.Platform
	req.DelegatorAsserted = rc.DelegatorAsserted
	return req, nil
}

// defaultTTL is the requested TTL when the caller gives none: an
// enforcement point asking "may it?" has no credential life in mind.
const defaultTTL = time.Hour

func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return defaultTTL, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, badf("context.ttl %q: want a duration such as \"15m\" or a number of seconds", s)
		}
		return d, nil
	}
	secs, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, badf("context.ttl: want a duration such as \"15m\" or a number of seconds")
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// authorize answers 401 or 403 and returns false when r's caller may not
// evaluate.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) (admin bool, ok bool) {
	caller, known := h.caller(r)
	switch err := h.rules.Evaluate(caller, known, false); {
	case errors.Is(err, access.ErrUnauthenticated):
		writeError(w, http.StatusUnauthorized, "no authenticated caller: present a client certificate (mTLS) whose SPIFFE ID is an evaluator")
		return false, false
	case err != nil:
		writeError(w, http.StatusForbidden, err.Error())
		return false, false
	}
	return h.rules.Evaluate(caller, known, true) == nil, true
}

func (h *Handler) evaluation(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	admin, ok := h.authorize(w, r)
	if !ok {
		return
	}
	var in EvaluationRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: not an AuthZEN evaluation request: "+err.Error())
		return
	}
	resp, code, msg := h.decide(r.Context(), &in, admin)
	if code != http.StatusOK {
		writeError(w, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) evaluations(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	admin, ok := h.authorize(w, r)
	if !ok {
		return
	}
	var in EvaluationsRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: not an AuthZEN evaluations request: "+err.Error())
		return
	}
	semantic := in.Options.EvaluationsSemantic
	switch semantic {
	case "":
		semantic = ExecuteAll
	case ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("options.evaluations_semantic %q: want %s, %s or %s", semantic, ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit))
		return
	}
	if len(in.Evaluations) > MaxEvaluations {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("evaluations: more than %d", MaxEvaluations))
		return
	}
	if len(in.Evaluations) == 0 {
		// §7: without evaluations, the request and its answer are a
		// single evaluation's.
		one := in.item(EvaluationItem{})
		resp, code, msg := h.decide(r.Context(), &one, admin)
		if code != http.StatusOK {
			writeError(w, code, msg)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	out := EvaluationsResponse{Evaluations: make([]EvaluationResponse, 0, len(in.Evaluations))}
	for _, item := range in.Evaluations {
		one := in.item(item)
		resp, code, msg := h.decide(r.Context(), &one, admin)
		if code == http.StatusInternalServerError {
			writeError(w, code, msg)
			return
		}
		if code != http.StatusOK {
			resp = EvaluationResponse{Context: ResponseContext{Error: &EvaluationError{Status: code, Message: msg}}}
		}
		out.Evaluations = append(out.Evaluations, resp)
		if (semantic == DenyOnFirstDeny && !resp.Decision) || (semantic == PermitOnFirstPermit && resp.Decision) {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// item is the evaluation it describes: its own subject, action, resource
// and context, else the batch's.
func (in *EvaluationsRequest) item(it EvaluationItem) EvaluationRequest {
	var req EvaluationRequest
	pick := func(own, def *Entity) Entity {
		switch {
		case own != nil:
			return *own
		case def != nil:
			return *def
		}
		return Entity{}
	}
	req.Subject = pick(it.Subject, in.Subject)
	req.Resource = pick(it.Resource, in.Resource)
	switch {
	case it.Action != nil:
		req.Action = *it.Action
	case in.Action != nil:
		req.Action = *in.Action
	}
	req.Context = in.Context
	if len(it.Context) > 0 {
		req.Context = it.Context
	}
	return req
}

// decide answers one evaluation for a caller that may evaluate (admin: and
// set the time); a status other than 200 comes with a message for the
// caller.
func (h *Handler) decide(ctx context.Context, in *EvaluationRequest, admin bool) (EvaluationResponse, int, string) {
	req, err := ToRequest(in)
	if err != nil {
		return EvaluationResponse{}, http.StatusBadRequest, err.Error()
	}
	if !req.Time.IsZero() && !admin {
		return EvaluationResponse{}, http.StatusForbidden, "context.time: only an admin (-admins) may set the decision time; leave it out and the server's clock decides"
	}
	d, err := h.engine.Evaluate(ctx, req)
	var fe *policy.FieldError
	switch {
	case errors.As(err, &fe):
		return EvaluationResponse{}, http.StatusBadRequest, fe.Error()
	case err != nil:
		h.log.ErrorContext(ctx, "authzen evaluation failed", "error", err)
		return EvaluationResponse{}, http.StatusInternalServerError, "internal error"
	}
	resp := EvaluationResponse{Decision: d.Allow, Context: ResponseContext{
		ID: d.DecisionID, PolicyVersion: d.PolicyVersion, Policies: d.Policies, Reasons: d.Reasons,
		Obligations: d.Obligations, DelegatorUnproven: d.DelegatorUnproven,
	}}
	if d.Allow {
		resp.Context.MaxTTL = d.MaxTTL.String()
		resp.Context.Profile = d.Profile.String()
	} else if len(d.Reasons) > 0 {
		resp.Context.ReasonAdmin = map[string]string{"en": d.Reasons[0]}
		resp.Context.ReasonUser = map[string]string{"en": d.Reasons[0]}
	}
	return resp, http.StatusOK, ""
}

func echoRequestID(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Request-ID"); id != "" {
		// The spec asks the PDP to echo it.
		w.Header().Set("X-Request-ID", id)
	}
}

func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	base := "http://" + r.Host
	if r.TLS != nil {
		base = "https://" + r.Host
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"policy_decision_point":       base,
		"access_evaluation_endpoint":  base + EvaluationPath,
		"access_evaluations_endpoint": base + EvaluationsPath,
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
