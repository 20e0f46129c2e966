package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/logbroker/logbroker/cmd/internal/metrics"
	"github.com/logbroker/logbroker/storage"
)

// TestHealthzStoreFailed: /healthz answers 503 with the cause while the
// store reports a failure (a disk error, a full disk), 200 "ok" otherwise.
func TestHealthzStoreFailed(t *testing.T) {
	for _, c := range []struct {
		name     string
		err      error
		code     int
		contains string
	}{
		{"Healthy", nil, http.StatusOK, "ok"},
		{"DiskFull", fmt.Errorf("%w: sync: no space left on device", storage.ErrFailed), http.StatusServiceUnavailable, "no space left on device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := httpHandler(nil, metrics.New(metrics.Sources{}), http.NotFoundHandler(), func() error { return c.err })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != c.code || !strings.Contains(string(body), c.contains) {
				t.Errorf("GET /healthz: %d %q, want %d containing %q", rec.Code, body, c.code, c.contains)
			}
		})
	}
}
