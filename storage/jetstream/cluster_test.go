package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// waitFor polls cond until it holds, failing t after timeout.
func waitFor(t jstest.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition
	}
}

// testContext returns a context that ends with the test or after d.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
