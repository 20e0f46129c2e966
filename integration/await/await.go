// Package await is the one wait-for-condition helper of logbroker's tests:
// it polls a condition until it holds or a liveness bound passes. Every
// test package may import it (it imports nothing of logbroker's), so that
// no test writes its own sleep-and-deadline loop.
//
// The bound is a liveness check, generous on purpose; a test that measures
// how soon something happens is a benchmark instead.
package await

import "time"

// TB is the part of testing.TB Until uses (jstest.TB has it too).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// maxInterval caps the polling interval, which starts at a millisecond and
// doubles: a quick condition is seen at once, a slow one costs little.
const maxInterval = 20 * time.Millisecond

// Until polls cond until it holds, and fails t (Fatalf, so call it on the
// test's goroutine) if it does not within the bound within; what names the
// condition in the failure.
func Until(t TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("%s: not within %v", what, within)
	}
}

// Within polls cond until it holds, and reports whether it did within the
// bound within, for a test that says more than Until when it did not (a
// goroutine dump) or goes on regardless. cond is called at least once, and
// once more after the bound has passed.
func Within(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for interval := time.Millisecond; !cond(); interval = min(2*interval, maxInterval) {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(interval, left))
	}
	return true
}
