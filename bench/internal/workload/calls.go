package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/jitid/jitid/bench/internal/echo"
	"github.com/jitid/jitid/bench/internal/load"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// ErrInactive means a live token introspected as inactive.
var ErrInactive = errors.New("workload: live token introspected as inactive")

// Issue is workload (a): one IssueCredential per call, unique tasks.
func Issue(p *Pool, reqs *Requests) load.Call {
	clients := p.Issuers()
	return func(ctx context.Context, w int, seq uint64) error {
		_, err := clients[w%len(clients)].IssueCredential(ctx, reqs.Issue(w, seq))
		return err
	}
}

// Mint issues n credentials with 32 callers and returns their responses.
func Mint(ctx context.Context, p *Pool, reqs *Requests, n int) ([]*issuerv1.IssueCredentialResponse, error) {
	clients := p.Issuers()
	out := make([]*issuerv1.IssueCredentialResponse, n)
	const workers = 32
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				resp, err := clients[w%len(clients)].IssueCredential(ctx, reqs.Issue(w, uint64(i)))
				if err != nil {
					errc <- fmt.Errorf("mint %d: %w", i, err)
					return
				}
				out[i] = resp
			}
		})
	}
	wg.Wait()
	close(errc)
	return out, <-errc
}

// Tokens returns the tokens of creds.
func Tokens(creds []*issuerv1.IssueCredentialResponse) []string {
	out := make([]string, len(creds))
	for i, c := range creds {
		out[i] = c.GetToken()
	}
	return out
}

// Introspect is workload (b): IntrospectCredential of live tokens, each
// caller walking the pool from its own offset.
func Introspect(p *Pool, tokens []string) load.Call {
	clients := p.Issuers()
	return func(ctx context.Context, w int, seq uint64) error {
		tok := tokens[(uint64(w)*7919+seq)%uint64(len(tokens))]
		resp, err := clients[w%len(clients)].IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: tok})
		if err != nil {
			return err
		}
		if !resp.GetActive() {
			return ErrInactive
		}
		return nil
	}
}

// Mix is workload (c): 70% introspect of live tokens, 25% issue, 5%
// complete-task of a task this caller issued for earlier.
func Mix(p *Pool, reqs *Requests, tokens []string) load.Call {
	clients := p.Issuers()
	introspect := Introspect(p, tokens)
	var mu sync.Mutex
	tasks := map[int][]string{} // worker -> tasks issued and not completed
	return func(ctx context.Context, w int, seq uint64) error {
		c := clients[w%len(clients)]
		switch k := seq % 20; {
		case k == 0:
			mu.Lock()
			var task string
			if q := tasks[w]; len(q) > 0 {
				task, tasks[w] = q[0], q[1:]
			}
			mu.Unlock()
			if task != "" {
				_, err := c.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: task, Reason: "task done"})
				return err
			}
			fallthrough // nothing to complete yet: issue instead
		case k <= 5:
			req := reqs.Issue(w, seq)
			if _, err := c.IssueCredential(ctx, req); err != nil {
				return err
			}
			mu.Lock()
			tasks[w] = append(tasks[w], req.GetTask().GetId())
			mu.Unlock()
			return nil
		default:
			return introspect(ctx, w, seq)
		}
	}
}

// Evaluate is workload (d): policy Evaluate alone over gRPC.
func Evaluate(p *Pool, reqs *Requests) load.Call {
	clients := p.Policies()
	return func(ctx context.Context, w int, seq uint64) error {
		resp, err := clients[w%len(clients)].Evaluate(ctx, reqs.Evaluate(w, seq))
		if err != nil {
			return err
		}
		if !resp.GetDecision().GetAllow() {
			return fmt.Errorf("policy denied a request the default set allows: %v", resp.GetDecision().GetReasons())
		}
		return nil
	}
}

// EchoPayload is as large as an issue request, so that the ceiling moves
// the same bytes in.
func EchoPayload(reqs *Requests) []byte {
	return make([]byte, proto.Size(reqs.Issue(0, 0)))
}

// Echo is the ceiling: the bare echo server, same payload size.
func Echo(p *Pool, payload []byte) load.Call {
	return func(ctx context.Context, w int, _ uint64) error {
		return echo.Call(ctx, p.Conn(w), payload)
	}
}
