package await_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbroker/logbroker/integration/await"
)

// recorder is an await.TB that records a failure instead of ending the test.
type recorder struct{ failed string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 5 {
			n.Add(1)
		}
	}()
	var r recorder
	await.Until(&r, 10*time.Second, "five increments", func() bool { return n.Load() == 5 })
	if r.failed != "" {
		t.Fatalf("Until failed a condition that held: %s", r.failed)
	}
}

func TestUntilFailsAfterTheBound(t *testing.T) {
	var r recorder
	calls := 0
	start := time.Now()
	await.Until(&r, 30*time.Millisecond, "never", func() bool { calls++; return false })
	if want := "never: not within 30ms"; r.failed != want {
		t.Fatalf("failure = %q, want %q", r.failed, want)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Errorf("gave up after %v, before the bound", waited)
	}
	if calls < 2 {
		t.Errorf("cond called %d times, want it polled", calls)
	}
}

func TestWithinChecksOnceMoreAtTheBound(t *testing.T) {
	start := time.Now()
	ok := await.Within(20*time.Millisecond, func() bool { return time.Since(start) >= 20*time.Millisecond })
	if !ok {
		t.Fatal("Within = false for a condition that held when the bound passed")
	}
	if !await.Within(0, func() bool { return true }) {
		t.Fatal("Within(0) = false for a condition that holds")
	}
}
