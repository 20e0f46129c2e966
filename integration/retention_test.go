package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logbroker/logbroker/integration/await"
)

// TestRetention runs the binary with --max-entries-per-stream 3 and a short
// --retention-interval: the oldest entries go in the background, the
// newest 3 stay, and ids keep increasing, also after a restart.
func TestRetention(t *testing.T) {
	s := start(t, "--max-entries-per-stream", "3", "--retention-interval", "50ms")
	c := s.dial(t)
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, c.log(map[string]any{"src": c.src, "stream": "console", "msg": fmt.Sprint("line ", i)}))
	}
	var got []entry
	await.Within(20*time.Second, func() bool { // checked below
		got = c.list(map[string]any{"src": c.src})
		return len(got) <= 3
	})
	if len(got) != 3 || got[0].ID != ids[7] || got[2].ID != ids[9] {
		t.Fatalf("after retention: %v, want the last 3 of %v", got, ids)
	}
	if !strings.Contains(s.logs(), "retention removed entries") {
		t.Errorf("no retention log line:\n%s", tail(s.logs(), 20))
	}
	r := s.restart()
	d := r.dial(t)
	if next := d.log(map[string]any{"src": c.src, "stream": "console", "msg": "after restart"}); next <= ids[9] {
		t.Errorf("id after retention and restart: %s, not above %s", next, ids[9])
	}
}
