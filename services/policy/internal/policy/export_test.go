package policy

import "time"

// DecideBothWays decides req, which must be valid, with the set's plan (as
// Evaluate does) and with one Cedar call per scope over the whole set, the
// reference the plan must agree with.
func DecideBothWays(s *Set, req Request, now time.Time) (planned, full Decision) {
	planned, ins := s.decide(&req, now, false)
	ins.release()
	full, ins = s.decide(&req, now, true)
	ins.release()
	return planned, full
}

// PlanSizes counts the policies the set's plan runs once per request, for
// every scope, and only for the scopes their head names.
func PlanSizes(s *Set) (once, everyScope, named int) {
	seen := map[string]bool{}
	for _, ap := range s.plan.byAction {
		for _, r := range ap.list {
			seen[string(r.id)] = true
		}
	}
	return len(s.plan.once), len(s.plan.anyAction), len(seen)
}
