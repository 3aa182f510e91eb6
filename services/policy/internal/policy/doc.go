// Package policy is jitid's decision point: it loads a Cedar policy set from
// .cedar files, checks the jitid annotations on it once per load, and turns
// an evaluation request into a Decision, scope by scope.
//
// The Cedar model a policy author writes against:
//
//	principal  Jitid::Agent::"<agent id>"
//	           { id, class ("EPHEMERAL"|"RECURRING"|"UNSPECIFIED"), platform,
//	             attributes: {string: string} }
//	           in the agents of the sub-agent chain (Jitid::Agent, same shape)
//	action     Jitid::Action::"<scope>"   one evaluation per requested scope
//	resource   Jitid::Task::"<task id>"
//	           { id, purpose, sensitivity ("LOW".."CRITICAL"),
//	             sensitivity_level (1..4), deadline? (datetime) }
//	context    { scope, delegator (Jitid::Delegator entity), sensitivity,
//	             ttl (duration), ttl_seconds, time (datetime, UTC),
//	             hour (0..23, UTC), weekday ("Monday".., UTC), audience }
//	Jitid::Delegator::"<delegator id>"
//	           { id, attributes: {string: string}, entitlements: Set<String>,
//	             time_zone?, authenticated_at? (datetime) }
//
// Annotations that jitid reads: @id, @reason (forbid), @max_ttl, @max_uses,
// @profile and @obligation (permit). The package has no transport imports: grpcapi maps
// the protos onto it.
package policy
