package redisstore

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// A credential hash holds the fields of redisscripts (Field*). Agent,
// delegator and task are kept as protobuf binary so that attributes
// survive as they were; times are Unix nanoseconds so that a credential
// reads back exactly as written.

// chainLink is the stored form of an issuer.ChainLink.
type chainLink struct {
	Agent  []byte   `json:"agent"` // protobuf binary
	Scopes []string `json:"scopes"`
}

// credentialFields returns the credential hash as field, value pairs.
func credentialFields(c *issuer.Credential) ([]any, error) {
	agent, err := proto.Marshal(c.Agent)
	if err != nil {
		return nil, fmt.Errorf("redisstore: encode agent: %w", err)
	}
	delegator, err := proto.Marshal(c.Delegator)
	if err != nil {
		return nil, fmt.Errorf("redisstore: encode delegator: %w", err)
	}
	task, err := proto.Marshal(c.Task)
	if err != nil {
		return nil, fmt.Errorf("redisstore: encode task: %w", err)
	}
	scopes, err := json.Marshal(c.Scopes)
	if err != nil {
		return nil, fmt.Errorf("redisstore: encode scopes: %w", err)
	}
	args := make([]any, 0, 34)
	args = append(args,
		redisscripts.FieldIssuer, c.Issuer,
		redisscripts.FieldAudience, c.Audience,
		redisscripts.FieldAgent, agent,
		redisscripts.FieldDelegator, delegator,
		redisscripts.FieldTask, task,
		redisscripts.FieldScopes, scopes,
		redisscripts.FieldIssuedAt, strconv.FormatInt(c.IssuedAt.UnixNano(), 10),
		redisscripts.FieldExpiresAt, strconv.FormatInt(c.ExpiresAt.UnixNano(), 10),
		redisscripts.FieldProfile, strconv.Itoa(int(c.Profile)),
		redisscripts.FieldPolicyVersion, c.PolicyVersion,
		redisscripts.FieldDecisionID, c.DecisionID,
		redisscripts.FieldDelegatorID, c.Delegator.GetId(),
		redisscripts.FieldAgentID, c.Agent.GetId(),
	)
	// Sub-agent, use-limit and binding fields only when set, so that a
	// plain credential's hash stays as small as before.
	if c.ParentID != "" {
		args = append(args, redisscripts.FieldParent, c.ParentID)
	}
	if len(c.Chain) > 0 {
		links := make([]chainLink, len(c.Chain))
		for i, l := range c.Chain {
			a, err := proto.Marshal(l.Agent)
			if err != nil {
				return nil, fmt.Errorf("redisstore: encode chain: %w", err)
			}
			links[i] = chainLink{Agent: a, Scopes: l.Scopes}
		}
		chain, err := json.Marshal(links)
		if err != nil {
			return nil, fmt.Errorf("redisstore: encode chain: %w", err)
		}
		args = append(args, redisscripts.FieldChain, chain)
	}
	if c.MaxUses > 0 {
		args = append(args, redisscripts.FieldMaxUses, strconv.Itoa(c.MaxUses))
	}
	if c.CnfJKT != "" {
		args = append(args, redisscripts.FieldCnfJKT, c.CnfJKT)
	}
	if c.Owner != "" {
		args = append(args, redisscripts.FieldOwner, c.Owner)
	}
	if c.AssertedBy != "" {
		args = append(args, redisscripts.FieldAssertedBy, c.AssertedBy)
	}
	return args, nil
}

// decodeCredential reads a credential hash; ok is false when the hash is
// empty (the key is gone).
func decodeCredential(id string, h map[string]string) (c *issuer.Credential, ok bool, err error) {
	if len(h) == 0 {
		return nil, false, nil
	}
	c = &issuer.Credential{
		ID:            id,
		Issuer:        h[redisscripts.FieldIssuer],
		Audience:      h[redisscripts.FieldAudience],
		Agent:         &identityv1.Agent{},
		Delegator:     &identityv1.Delegator{},
		Task:          &identityv1.Task{},
		PolicyVersion: h[redisscripts.FieldPolicyVersion],
		DecisionID:    h[redisscripts.FieldDecisionID],
	}
	if err := proto.Unmarshal([]byte(h[redisscripts.FieldAgent]), c.Agent); err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: agent: %w", id, err)
	}
	if err := proto.Unmarshal([]byte(h[redisscripts.FieldDelegator]), c.Delegator); err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: delegator: %w", id, err)
	}
	if err := proto.Unmarshal([]byte(h[redisscripts.FieldTask]), c.Task); err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: task: %w", id, err)
	}
	if s := h[redisscripts.FieldScopes]; s != "" {
		if err := json.Unmarshal([]byte(s), &c.Scopes); err != nil {
			return nil, false, fmt.Errorf("redisstore: credential %s: scopes: %w", id, err)
		}
	}
	iat, err := strconv.ParseInt(h[redisscripts.FieldIssuedAt], 10, 64)
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: issued at: %w", id, err)
	}
	exp, err := strconv.ParseInt(h[redisscripts.FieldExpiresAt], 10, 64)
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: expires at: %w", id, err)
	}
	profile, err := strconv.Atoi(h[redisscripts.FieldProfile])
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: credential %s: profile: %w", id, err)
	}
	c.ParentID = h[redisscripts.FieldParent]
	c.CnfJKT = h[redisscripts.FieldCnfJKT]
	c.Owner = h[redisscripts.FieldOwner]
	c.AssertedBy = h[redisscripts.FieldAssertedBy]
	if v := h[redisscripts.FieldChain]; v != "" {
		var links []chainLink
		if err := json.Unmarshal([]byte(v), &links); err != nil {
			return nil, false, fmt.Errorf("redisstore: credential %s: chain: %w", id, err)
		}
		for _, l := range links {
			a := &identityv1.Agent{}
			if err := proto.Unmarshal(l.Agent, a); err != nil {
				return nil, false, fmt.Errorf("redisstore: credential %s: chain: %w", id, err)
			}
			c.Chain = append(c.Chain, issuer.ChainLink{Agent: a, Scopes: l.Scopes})
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{redisscripts.FieldMaxUses, &c.MaxUses}, {redisscripts.FieldUses, &c.Uses}} {
		if v, ok := h[f.name]; ok {
			if *f.dst, err = strconv.Atoi(v); err != nil {
				return nil, false, fmt.Errorf("redisstore: credential %s: %s: %w", id, f.name, err)
			}
		}
	}
	c.IssuedAt = time.Unix(0, iat)
	c.ExpiresAt = time.Unix(0, exp)
	c.Profile = identityv1.Profile(profile)
	return c, true, nil
}

// expiredRecord is what the sweeper needs when a credential expires: its
// expired event (id, and the event as protobuf binary, which the relay turns
// into the CloudEvents envelope when it publishes) and the ids of the
// indexes to clean: task, agent, delegator. Each field is a 4-byte
// big-endian length and its bytes, which sweep.lua splits in one
// struct.unpack; any byte may appear in a field.
func expiredRecord(eventID string, event []byte, taskID, agentID, delegatorID string) []byte {
	ids := [...]string{taskID, agentID, delegatorID}
	n := 4 + len(eventID) + 4 + len(event)
	for _, id := range ids {
		n += 4 + len(id)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(eventID)))
	b = append(b, eventID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(event)))
	b = append(b, event...)
	for _, id := range ids {
		b = binary.BigEndian.AppendUint32(b, uint32(len(id)))
		b = append(b, id...)
	}
	return b
}

// checkExpired refuses an expired event that eventbus.Encode would refuse
// when the relay publishes it, so that Issue fails now instead of the
// event being dropped at expiry.
func checkExpired(ev *eventsv1.LifecycleEvent) error {
	if ev.GetId() == "" {
		return fmt.Errorf("expired event: %w: no event id", eventbus.ErrMalformed)
	}
	if ev.GetType() != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED {
		return fmt.Errorf("expired event: %w: type %s", eventbus.ErrMalformed, ev.GetType())
	}
	for _, ts := range []*timestamppb.Timestamp{ev.GetTime(), ev.GetIssueTime(), ev.GetExpireTime(), ev.GetTask().GetDeadlineTime()} {
		if ts == nil {
			continue
		}
		if err := ts.CheckValid(); err != nil {
			return fmt.Errorf("expired event: %w: %v", eventbus.ErrMalformed, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
		}
	}
	return nil
}
