package workload

import (
	"testing"

	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// TestRedisScriptRateFollowsTheIssueScriptsContract: the reference lays
// out KEYS and ARGV by hand for redis-benchmark; a change to the issue
// script's contract must show here rather than as a benchmark of the
// wrong keys.
func TestRedisScriptRateFollowsTheIssueScriptsContract(t *testing.T) {
	t.Parallel()
	if redisscripts.Issue.Keys != issueKeys || redisscripts.Issue.Args != issueArgs {
		t.Errorf("issue script KEYS %q, ARGV %q; RedisScriptRate lays out KEYS %q, ARGV %q",
			redisscripts.Issue.Keys, redisscripts.Issue.Args, issueKeys, issueArgs)
	}
}
