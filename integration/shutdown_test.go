package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestShutdownAnswersEveryCall sends SIGTERM while clients stream Log.Log
// calls and others have follows waiting: every call the broker took (its
// PUBACK arrived) is answered, with a result or 503, every follow with []
// or entries, and the broker exits 0 within stopTimeout. The calls that
// succeeded are there after a restart (checkSurvivors).
func TestShutdownAnswersEveryCall(t *testing.T) {
	t.Parallel()
	s := start(t)
	type waiting struct {
		c    *client
		wait func(time.Duration) (response, bool)
	}
	var follows []waiting
	for range 4 {
		c := s.dial(t)
		follows = append(follows, waiting{c, c.startFollow(map[string]any{"last": 0}, map[string]any{"timeout": 60})})
	}
	stop := make(chan struct{})
	results, wait := pump(t, s, 3, stop)
	waitPumped(t, results, 200)
	began := time.Now()
	s.terminate()
	code := s.wait(stopTimeout)
	took := time.Since(began)
	close(stop)
	wait()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	for i, f := range follows {
		r, ok := f.wait(callTimeout)
		if !ok {
			t.Errorf("follow %d: no answer before the broker exited", i)
			continue
		}
		var es []json.RawMessage
		if r.Error != nil || json.Unmarshal(r.Result, &es) != nil {
			t.Errorf("follow %d answered %s, want [] or entries", i, r.Raw)
		}
	}
	taken, refused, answered := 0, 0, 0
	for _, r := range results {
		r.collect(t)
		// Responses to the last calls can arrive after the publishes
		// stopped; once the process is gone nothing more comes.
		taken += r.sent
		answered += len(r.acked) + len(r.codes)
		refused += len(r.codes)
		for n := 1; n <= r.sent; n++ {
			_, ok := r.acked[n]
			if code, failed := r.codes[n]; failed && code != 503 {
				t.Errorf("%s: call %d answered %d, want success or 503", r.c.src, n, code)
			} else if !ok && !failed {
				t.Errorf("%s: call %d was taken (PUBACK) but never answered", r.c.src, n)
			}
		}
	}
	t.Logf("SIGTERM to exit: %v; %d calls taken, %d answered (%d with 503), %d follows answered", took.Round(time.Millisecond), taken, answered, refused, len(follows))
	if bad := problems(s.logs()); len(bad) > 0 {
		t.Errorf("errors or warnings logged:\n%s", strings.Join(bad, "\n"))
	}
	checkSurvivors(t, s.restart(), results)
}
