package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// benchResult is the part of `logbroker bench --json` the tests read.
type benchResult struct {
	Method   string           `json:"method"`
	Calls    int64            `json:"calls"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Timeouts int64            `json:"timeouts"`
	Lost     int64            `json:"lost"`
	Errors   map[string]int64 `json:"errors"`
	Rate     float64          `json:"calls_per_sec"`
	Latency  struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50_ms"`
		Max   float64 `json:"max_ms"`
	} `json:"latency"`
	Entries int64 `json:"entries"`
	Follow  *struct {
		Seen, Expected, Missed int64
	} `json:"follow"`
	FanOut *struct {
		Received, Expected int64
	} `json:"fanout"`
	Attack *struct {
		Name            string
		Connects, Calls int64
	} `json:"attack"`
}

// runBench runs `logbroker bench` with args and --json, and decodes its
// result. It asserts only that the calls succeeded: no timed assertions.
func runBench(t *testing.T, args ...string) benchResult {
	t.Helper()
	args = append([]string{"bench", "--json", "--clients", "4", "--inflight", "8"}, args...)
	out, code := runBinary(t, 2*time.Minute, args...)
	if code != 0 {
		t.Fatalf("logbroker %v: exit code %d, want 0; output:\n%s", args, code, out)
	}
	res := decodeBench(t, out)
	if res.OK <= 0 || res.OK != res.Calls {
		t.Errorf("%d calls sent, %d ok: want every call answered with a result; output:\n%s", res.Calls, res.OK, out)
	}
	if res.Failed != 0 || res.Timeouts != 0 || res.Lost != 0 || len(res.Errors) != 0 {
		t.Errorf("failed %d, timed out %d, lost %d, errors %v: want none; output:\n%s", res.Failed, res.Timeouts, res.Lost, res.Errors, out)
	}
	if res.Latency.Count != int(res.OK) {
		t.Errorf("latency of %d calls, want one per answered call (%d)", res.Latency.Count, res.OK)
	}
	return res
}

func TestBench(t *testing.T) {
	t.Run("EmbeddedLog", func(t *testing.T) {
		res := runBench(t, "--embedded", "--duration", "2s", "--method", "Log.Log")
		if res.Method != "Log.Log" {
			t.Errorf("method %q, want Log.Log", res.Method)
		}
	})
	t.Run("EmbeddedPing", func(t *testing.T) {
		res := runBench(t, "--embedded", "--duration", "2s", "--method", "RPC.Ping")
		if res.Method != "RPC.Ping" {
			t.Errorf("method %q, want RPC.Ping", res.Method)
		}
	})
	t.Run("EmbeddedFollowersAndDashboards", func(t *testing.T) {
		res := runBench(t, "--embedded", "--duration", "2s", "--rate", "200", "--source", "shared",
			"--followers", "2", "--dashboards", "2")
		if res.Follow == nil || res.Follow.Missed != 0 || res.Follow.Seen != res.Follow.Expected || res.Follow.Expected != 2*res.OK {
			t.Errorf("follow %+v: want every logged entry (%d) seen by both followers", res.Follow, res.OK)
		}
		if res.FanOut == nil || res.FanOut.Received != res.FanOut.Expected || res.FanOut.Expected != 2*res.OK {
			t.Errorf("fan-out %+v: want every logged entry (%d) received by both dashboards", res.FanOut, res.OK)
		}
	})
	t.Run("Server", func(t *testing.T) {
		s := start(t)
		// Log first, then list what was logged: the sources are the bench
		// clients' own (bench-0 .. bench-3).
		runBench(t, "--broker", "tcp://"+s.MQTT, "--count", "2000", "--method", "Log.Log")
		res := runBench(t, "--broker", "tcp://"+s.MQTT, "--count", "200", "--method", "Log.List", "--list-last", "10")
		if res.Entries != 10*res.OK {
			t.Errorf("Log.List last 10 returned %d entries in %d calls, want 10 each", res.Entries, res.OK)
		}
		runBench(t, "--broker", "ws://"+s.WS+"/mqtt", "--count", "500", "--method", "RPC.Ping", "--qos", "0")
	})
	t.Run("FailedCallsExitNonZero", func(t *testing.T) {
		s := start(t, "--max-msg", "10")
		out, code := runBinary(t, time.Minute, "bench", "--json", "--broker", "tcp://"+s.MQTT,
			"--clients", "1", "--inflight", "1", "--count", "5", "--method", "Log.Log", "--msg-size", "100")
		if code == 0 {
			t.Fatalf("every Log.Log was over --max-msg, yet bench exited 0:\n%s", out)
		}
		if res := decodeBench(t, out); res.Errors["413"] != 5 {
			t.Errorf("errors %v, want 413: 5", res.Errors)
		}
	})
}

// decodeBench finds the JSON result among the output lines (stderr
// warnings may surround it).
func decodeBench(t *testing.T, out string) benchResult {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, `{"method"`) {
			continue
		}
		var res benchResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatalf("bench result is not JSON (%v): %s", err, line)
		}
		return res
	}
	t.Fatalf("no JSON result in the bench output:\n%s", out)
	return benchResult{}
}
