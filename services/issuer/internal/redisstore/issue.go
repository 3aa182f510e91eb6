package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// ErrIDInUse means Issue was given the id of a credential that is live.
var ErrIDInUse = errors.New("redisstore: credential id already in use")

var issueLua = redis.NewScript(redisscripts.Issue.Source)

// issueCall is a run of issue.lua. The parent's keys are set for an
// exchange only.
type issueCall struct {
	Cred           string `key:"cred"`
	Task           string `key:"task"`
	Agent          string `key:"agent"`
	Delegator      string `key:"delegator"`
	Expiry         string `key:"expiry"`
	Expired        string `key:"expired"`
	Done           string `key:"done"`
	Outbox         string `key:"outbox"`
	Owner          string `key:"owner"`
	Parent         string `key:"parent,optional"`
	ParentChildren string `key:"parent_children,optional"`
	Marks          string `key:"marks,optional"`

	ID            string `arg:"id"`
	ExpireMS      int64  `arg:"expire_ms"`
	EventID       string `arg:"event_id"`
	Subject       string `arg:"subject"`
	Payload       []byte `arg:"payload"`
	ExpiredRecord []byte `arg:"expired_record"`
	Caller        string `arg:"caller"`
	OwnerTTLMS    int64  `arg:"owner_ttl_ms"`
	// Fields is the credential hash as field, value pairs.
	Fields []any `arg:"fields..."`
}

// issueResult is what issue.lua did.
type issueResult int64

const (
	issueWritten       issueResult = 1
	issueTaskCompleted issueResult = 0
	issueIDLive        issueResult = -1
	issueParentGone    issueResult = -2
	issueNotOwner      issueResult = -3
)

func (c *issueCall) keysArgs() ([]string, []any) {
	keys := []string{c.Cred, c.Task, c.Agent, c.Delegator, c.Expiry, c.Expired, c.Done, c.Outbox, c.Owner}
	if c.Parent != "" {
		keys = append(keys, c.Parent, c.ParentChildren, c.Marks)
	}
	args := make([]any, 0, 8+len(c.Fields))
	args = append(args, c.ID, c.ExpireMS, c.EventID, c.Subject, c.Payload, c.ExpiredRecord, c.Caller, c.OwnerTTLMS)
	return keys, append(args, c.Fields...)
}

// Run runs the script.
func (c *issueCall) Run(ctx context.Context, rdb redis.Scripter) (issueResult, error) {
	keys, args := c.keysArgs()
	v, err := issueLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return 0, err
	}
	return decodeIssue(v)
}

func decodeIssue(v any) (issueResult, error) {
	n, err := replyInt("issue", v)
	if err != nil {
		return 0, err
	}
	switch r := issueResult(n); r {
	case issueWritten, issueTaskCompleted, issueIDLive, issueParentGone, issueNotOwner:
		return r, nil
	}
	return 0, fmt.Errorf("%w from issue: %d", errUnexpectedReply, n)
}

// Issue implements the issuer's store: one script writes the credential
// (its key expiring at ExpiresAt), its indexes, its expiry schedule, the
// issued event into the outbox and the expired event kept for the sweeper.
// expired must be of type EVENT_TYPE_CREDENTIAL_EXPIRED; it is kept as
// protobuf and encoded by the relay only if the credential expires. The
// task's owner is recorded (or checked) in the same script. With a
// delegator quota, a place in it is held first (quota.lua) and released
// when the script refuses the credential.
func (s *Store) Issue(ctx context.Context, c *issuer.Credential, issued, expired *eventsv1.LifecycleEvent) error {
	if c == nil || c.ID == "" {
		return errors.New("redisstore: issue: credential without id")
	}
	issuedData, err := eventbus.Encode(s.opts.Source, issued)
	if err != nil {
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, err)
	}
	// The expired event is kept as protobuf binary: most credentials
	// expire, but its envelope is only needed then, and the relay builds it.
	if err := checkExpired(expired); err != nil {
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, err)
	}
	expiredPB, err := proto.Marshal(expired)
	if err != nil {
		return fmt.Errorf("redisstore: issue %s: expired event: %w", c.ID, err)
	}
	fields, err := credentialFields(c)
	if err != nil {
		return err
	}
	taskID, agentID, delegatorID := c.Task.GetId(), c.Agent.GetId(), c.Delegator.GetId()
	sh := s.shardOf(taskID)
	call := issueCall{
		Cred: sh.cred(c.ID), Task: sh.task(taskID), Agent: sh.agent(agentID), Delegator: sh.delegator(delegatorID),
		Expiry: sh.expiry, Expired: sh.expired, Done: sh.done(taskID), Outbox: sh.outbox, Owner: sh.owner(taskID),
		ID: c.ID, ExpireMS: c.ExpiresAt.UnixMilli(), Caller: c.Owner, OwnerTTLMS: s.opts.DoneTTL.Milliseconds(),
		EventID: issued.GetId(), Subject: s.opts.Events.Subject(issued.GetType()), Payload: issuedData,
		ExpiredRecord: expiredRecord(expired.GetId(), expiredPB, taskID, agentID, delegatorID),
		Fields:        fields,
	}
	if c.ParentID != "" {
		call.Parent, call.ParentChildren, call.Marks = sh.cred(c.ParentID), sh.children(c.ParentID), sh.marks
	}
	if err := s.holdQuota(ctx, c); err != nil {
		return err
	}
	res, err := call.Run(ctx, s.rdb)
	if err != nil {
		// Whether the script ran is unknown: the place stays held until
		// the credential would expire (counting one too many, never one
		// too few).
		return storeErr("issue "+c.ID, err)
	}
	if res != issueWritten {
		s.releaseQuota(ctx, map[string]string{c.ID: delegatorID})
	}
	switch res {
	case issueTaskCompleted:
		return fmt.Errorf("redisstore: issue %s for task %s: %w", c.ID, taskID, issuer.ErrTaskCompleted)
	case issueIDLive:
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, ErrIDInUse)
	case issueParentGone:
		return fmt.Errorf("redisstore: exchange %s: parent %s: %w", c.ID, c.ParentID, issuer.ErrNotFound)
	case issueNotOwner:
		return fmt.Errorf("redisstore: issue %s for task %s: %w", c.ID, taskID, issuer.ErrCallerNotAllowed)
	}
	s.notify()
	return nil
}
