package redisscripts

// Fields of a credential hash (<prefix>:{<shard>}:cred:<id>). Agent,
// delegator and task are protobuf binary, times Unix nanoseconds.
const (
	FieldIssuer        = "iss"
	FieldAudience      = "aud"
	FieldAgent         = "agent"
	FieldDelegator     = "delegator"
	FieldTask          = "task"
	FieldScopes        = "scopes"
	FieldIssuedAt      = "iat"
	FieldExpiresAt     = "exp"
	FieldProfile       = "profile"
	FieldPolicyVersion = "policy_version"
	FieldDecisionID    = "decision_id"
	FieldParent        = "parent"
	FieldChain         = "chain"
	FieldMaxUses       = "max_uses"
	FieldUses          = "uses"
	FieldCnfJKT        = "cnf_jkt"
	// FieldDelegatorID and FieldAgentID hold the delegator's and agent's
	// ids as they are, for the scripts to look up revocation marks.
	FieldDelegatorID = "did"
	FieldAgentID     = "aid"
	// FieldWritten is Redis's time (µs) when the issue script wrote the
	// credential, compared with revocation marks.
	FieldWritten = "written"
	// FieldOwner is the platform that issued the credential (the owner
	// of its task); FieldAssertedBy the platform that asserted its
	// delegator, when no subject token proved it.
	FieldOwner      = "owner"
	FieldAssertedBy = "asserted_by"
)

// Parts of key names after the shard prefix "<prefix>:{<shard>}:". Those
// ending in a colon are followed by an id.
const (
	KeyCred      = "cred:"
	KeyTask      = "task:"
	KeyAgent     = "agent:"
	KeyDelegator = "delegator:"
	KeyChildren  = "children:"
	KeyDone      = "done:"
	// KeyOwner is followed by a task id: the platform that owns the task.
	KeyOwner = "owner:"
	// KeyQuota is followed by a delegator id: its live credentials by
	// expiry (ms), in the delegator's home shard (quota.lua).
	KeyQuota   = "quota:"
	KeyExpiry  = "expiry"
	KeyExpired = "expired"
	KeyOutbox  = "outbox"
	KeyMarks   = "revoked"
)

// Fields of an outbox stream entry: the event id (the relay's Nats-Msg-Id),
// the subject, and the event as CloudEvents JSON (EntryData) or, for
// expired events, as protobuf binary for the relay to encode (EntryPB).
const (
	EntryID      = "id"
	EntrySubject = "subject"
	EntryData    = "data"
	EntryPB      = "pb"
)

// Prefixes of the members of a shard's revocation marks, followed by the
// delegator's or agent's id.
const (
	MarkDelegator = "delegator:"
	MarkAgent     = "agent:"
)

// names are the names the scripts may use, by table (F: credential hash
// fields, K: key parts, E: outbox entry fields, M: mark member prefixes)
// and Lua name. Load writes each value into the source in place of
// "<table>.<name>", so that a name is defined here only, and costs a
// script nothing at run time.
var names = map[string]map[string]string{
	"F": {
		"Issuer": FieldIssuer, "Audience": FieldAudience, "Agent": FieldAgent,
		"Delegator": FieldDelegator, "Task": FieldTask, "Scopes": FieldScopes,
		"IssuedAt": FieldIssuedAt, "ExpiresAt": FieldExpiresAt, "Profile": FieldProfile,
		"PolicyVersion": FieldPolicyVersion, "DecisionID": FieldDecisionID,
		"Parent": FieldParent, "Chain": FieldChain, "MaxUses": FieldMaxUses,
		"Uses": FieldUses, "CnfJKT": FieldCnfJKT, "DelegatorID": FieldDelegatorID,
		"AgentID": FieldAgentID, "Written": FieldWritten, "Owner": FieldOwner,
		"AssertedBy": FieldAssertedBy,
	},
	"K": {
		"Cred": KeyCred, "Task": KeyTask, "Agent": KeyAgent, "Delegator": KeyDelegator,
		"Children": KeyChildren, "Done": KeyDone, "Owner": KeyOwner, "Quota": KeyQuota, "Expiry": KeyExpiry,
		"Expired": KeyExpired, "Outbox": KeyOutbox, "Marks": KeyMarks,
	},
	"E": {"ID": EntryID, "Subject": EntrySubject, "Data": EntryData, "PB": EntryPB},
	"M": {"Delegator": MarkDelegator, "Agent": MarkAgent},
}
