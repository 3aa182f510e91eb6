package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jitid/jitid/pkg/credverify"
)

// Scopes the API's operations need.
const (
	scopeRead     = "tickets:read"
	scopePurchase = "tickets:purchase"
)

// ticket is one event's tickets on sale.
type ticket struct {
	ID        string `json:"id"`
	Event     string `json:"event"`
	PriceEUR  int    `json:"price_eur"`
	Available int    `json:"available"`
}

// delegation is the verified context of a request: who authorised it,
// which agents act, for which task. It is shown in responses and logs so
// that every action is attributable; the token never is.
type delegation struct {
	CredentialID string   `json:"credential_id"`
	Delegator    string   `json:"delegator"`
	AgentChain   []string `json:"agent_chain"`
	TaskID       string   `json:"task_id"`
	TaskPurpose  string   `json:"task_purpose,omitempty"`
	Sensitivity  string   `json:"task_sensitivity,omitempty"`
	Scopes       []string `json:"scopes"`
}

func delegationOf(c *credverify.Claims) delegation {
	return delegation{
		CredentialID: c.ID, Delegator: c.Delegator(), AgentChain: c.AgentChain(),
		TaskID: c.Task.ID, TaskPurpose: c.Task.Purpose, Sensitivity: c.Task.Sensitivity, Scopes: c.Scopes(),
	}
}

func (d delegation) attrs() slog.Attr {
	return slog.Group("delegation", "credential_id", d.CredentialID, "delegator", d.Delegator,
		"agent_chain", d.AgentChain, "task_id", d.TaskID, "task_purpose", d.TaskPurpose)
}

type api struct {
	log   *slog.Logger
	ready func() bool

	mu      sync.Mutex
	tickets []ticket
	orders  int
}

// newAPI returns the HTTP handler: GET /tickets (tickets:read, offline),
// POST /tickets/purchase (tickets:purchase, online), GET /healthz.
func newAPI(v *credverify.Verifier, log *slog.Logger, publicURL string, ready func() bool) http.Handler {
	a := &api{log: log, ready: ready, tickets: []ticket{
		{ID: "t-100", Event: "Go meetup, Berlin", PriceEUR: 0, Available: 80},
		{ID: "t-200", Event: "Jazz at the Philharmonie", PriceEUR: 45, Available: 12},
		{ID: "t-300", Event: "Cup final", PriceEUR: 120, Available: 3},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.health)
	read := credverify.HTTPOptions{Scopes: []string{scopeRead}, PublicURL: publicURL, Logger: log}
	// Buying is sensitive: the issuer is asked on every purchase, so a
	// credential revoked a moment ago (or past its max_uses) is refused at
	// once, whatever the revocation list knows yet.
	buy := credverify.HTTPOptions{Scopes: []string{scopePurchase}, Online: true, PublicURL: publicURL, Logger: log}
	mux.Handle("GET /tickets", a.whenReady(v.Middleware(read, http.HandlerFunc(a.list))))
	mux.Handle("POST /tickets/purchase", a.whenReady(v.Middleware(buy, http.HandlerFunc(a.purchase))))
	return mux
}

func (a *api) health(w http.ResponseWriter, _ *http.Request) {
	if !a.ready() {
		http.Error(w, "revocation list not loaded yet", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// whenReady refuses requests until the revocation list has caught up:
// serving before would accept credentials revoked while the API was down.
func (a *api) whenReady(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.ready() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "starting: revocation list not loaded yet", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	c, _ := credverify.FromContext(r.Context())
	d := delegationOf(c)
	a.mu.Lock()
	tickets := append([]ticket(nil), a.tickets...)
	a.mu.Unlock()
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "tickets listed", d.attrs())
	writeJSON(w, http.StatusOK, map[string]any{"tickets": tickets, "delegation": d})
}

type purchaseRequest struct {
	TicketID string `json:"ticket_id"`
	Quantity int    `json:"quantity"`
}

type order struct {
	ID         string     `json:"id"`
	TicketID   string     `json:"ticket_id"`
	Quantity   int        `json:"quantity"`
	TotalEUR   int        `json:"total_eur"`
	At         time.Time  `json:"at"`
	Delegation delegation `json:"delegation"`
}

func (a *api) purchase(w http.ResponseWriter, r *http.Request) {
	c, _ := credverify.FromContext(r.Context())
	d := delegationOf(c)
	var req purchaseRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || req.TicketID == "" || req.Quantity < 1 || req.Quantity > 10 {
		http.Error(w, `want {"ticket_id": "...", "quantity": 1..10}`, http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	var o *order
	for i := range a.tickets {
		t := &a.tickets[i]
		if t.ID != req.TicketID || t.Available < req.Quantity {
			continue
		}
		t.Available -= req.Quantity
		a.orders++
		o = &order{ID: fmt.Sprintf("o-%d", a.orders), TicketID: t.ID, Quantity: req.Quantity,
			TotalEUR: t.PriceEUR * req.Quantity, At: time.Now().UTC(), Delegation: d}
	}
	a.mu.Unlock()
	if o == nil {
		http.Error(w, "no such ticket, or not that many left", http.StatusConflict)
		return
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "tickets purchased", d.attrs(),
		slog.String("order_id", o.ID), slog.String("ticket_id", o.TicketID), slog.Int("quantity", o.Quantity))
	writeJSON(w, http.StatusOK, o)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
