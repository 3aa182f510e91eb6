// Package workload holds the benchmark workloads of issue 5: the calls the
// load generator makes (issue, introspect, the mix, policy evaluate, the
// echo ceiling) and the scenarios that need more than a call (audit ingest
// and catch-up, mass expiry, revoke by delegator, the Redis and verifier
// references).
package workload

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// Pool is a few client connections per server, spread over by worker, as an
// agent platform with several replicas would hold: one HTTP/2 connection
// serializes its frames on one reader and one writer.
type Pool struct {
	conns []*grpc.ClientConn
}

// Dial opens n connections to addr with creds (plaintext when nil).
func Dial(addr string, n int, creds credentials.TransportCredentials) (*Pool, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	p := &Pool{}
	for range max(n, 1) {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			p.Close()
			return nil, err
		}
		p.conns = append(p.conns, c)
	}
	return p, nil
}

// Conn returns the connection of a worker.
func (p *Pool) Conn(worker int) *grpc.ClientConn { return p.conns[worker%len(p.conns)] }

// Close closes every connection.
func (p *Pool) Close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// Issuers returns one IssuerService client per connection.
func (p *Pool) Issuers() []issuerv1.IssuerServiceClient {
	out := make([]issuerv1.IssuerServiceClient, len(p.conns))
	for i, c := range p.conns {
		out[i] = issuerv1.NewIssuerServiceClient(c)
	}
	return out
}

// Policies returns one PolicyService client per connection.
func (p *Pool) Policies() []policyv1.PolicyServiceClient {
	out := make([]policyv1.PolicyServiceClient, len(p.conns))
	for i, c := range p.conns {
		out[i] = policyv1.NewPolicyServiceClient(c)
	}
	return out
}

// runSeq makes task ids unique across runs of one process and across
// processes started within the same second.
var runSeq atomic.Uint64

// Requests builds realistic, unique requests: an ephemeral agent per task,
// a delegator among a few hundred, a MEDIUM task with a sentence of purpose,
// two scopes, attributes as an agent platform would send them.
type Requests struct {
	prefix string
	// n numbers the parties, so that every request of a builder names its
	// own task and agent, across runs too.
	n atomic.Uint64
	// Delegator, when set, is every request's delegator.
	Delegator string
	// TTL is the requested life (10 minutes when zero).
	TTL time.Duration
}

// NewRequests returns a request builder whose ids no other builder uses.
func NewRequests(name string) *Requests {
	return &Requests{prefix: fmt.Sprintf("%s-%x-%d", name, time.Now().UnixNano()&0xffffffff, runSeq.Add(1))}
}

func (r *Requests) parties(worker int, seq uint64) (*identityv1.Agent, *identityv1.Delegator, *identityv1.Task) {
	id := r.prefix + "-" + strconv.FormatUint(r.n.Add(1), 10)
	delegator := r.Delegator
	if delegator == "" {
		delegator = "user:" + strconv.FormatUint((uint64(worker)*7919+seq)%500, 10) + "@example.com"
	}
	return &identityv1.Agent{
			Id: "agent:research-" + id, Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Platform: "bench-platform",
			Attributes: map[string]string{"model": "gpt-class-large", "runtime": "sandbox-v2"},
		}, &identityv1.Delegator{
			Id: delegator, Attributes: map[string]string{"department": "support", "region": "eu-west"},
			TimeZone: "Europe/Paris", Entitlements: []string{"tickets:read", "tickets:comment"},
		}, &identityv1.Task{
			Id: "task-" + id, Purpose: "summarise the open Q3 support tickets of the premium customers and draft replies",
			Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM,
		}
}

// Issue returns the IssueCredential request of call seq of worker.
func (r *Requests) Issue(worker int, seq uint64) *issuerv1.IssueCredentialRequest {
	agent, delegator, task := r.parties(worker, seq)
	ttl := r.TTL
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	return &issuerv1.IssueCredentialRequest{
		Agent: agent, Delegator: delegator, Task: task,
		Scopes: []string{"tickets:read", "tickets:comment"},
		Ttl:    durationpb.New(ttl),
	}
}

// Evaluate returns the policy request the issuer would send for call seq.
func (r *Requests) Evaluate(worker int, seq uint64) *policyv1.EvaluateRequest {
	agent, delegator, task := r.parties(worker, seq)
	return &policyv1.EvaluateRequest{
		Agent: agent, Delegator: delegator, Task: task,
		Scopes:   []string{"tickets:read", "tickets:comment"},
		Ttl:      durationpb.New(10 * time.Minute),
		Platform: "spiffe://jitid.local/platform/demo",
		Audience: "jitid",
	}
}
