package integration

import "testing"

// TestAttacks runs each attack of issue 11 (`bench --attack`, raw sockets)
// beside a well-behaved device making one Log.Log call at a time, and
// checks that every one of its calls is answered within a second (bench
// --timeout 1s counts a later answer as timed out). The latency figures
// themselves belong to BENCHMARKS.md.
func TestAttacks(t *testing.T) {
	for _, tc := range []struct {
		attack string
		calls  bool // the attack makes calls of its own
	}{
		// An MQTT 5 client with Maximum Packet Size 16 calls Log.Log at
		// 200/s: no answer fits it.
		{"tiny-packet", true},
		// 8 persistent sessions (3.1.1 clean=false) reconnect in a loop,
		// each closing its socket right after one call.
		{"takeover", true},
		// 2 MQTT 5 sessions reconnect with Maximum Packet Size 2: the
		// CONNACK cannot be sent.
		{"no-connack", false},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			s := start(t)
			res := runBench(t, "--broker", "tcp://"+s.MQTT, "--clients", "1", "--inflight", "1",
				"--method", "Log.Log", "--duration", "5s", "--timeout", "1s", "--attack", tc.attack)
			if res.Attack == nil || res.Attack.Name != tc.attack || res.Attack.Connects == 0 || (tc.calls && res.Attack.Calls == 0) {
				t.Fatalf("attack %+v: want %s to have connected (and called)", res.Attack, tc.attack)
			}
			if res.Latency.Max >= 1000 {
				t.Errorf("slowest answer %.0f ms, want every call answered within 1 s", res.Latency.Max)
			}
			t.Logf("%s: %d calls of the device, p50 %.2f ms, max %.1f ms; attack %+v", tc.attack, res.OK, res.Latency.P50, res.Latency.Max, *res.Attack)
			if !s.alive() {
				t.Fatal("the broker died under the attack")
			}
			// The answers that fit no client's Maximum Packet Size were
			// discarded as if sent, and counted.
			if tc.attack == "tiny-packet" {
				if n := s.scrape(t).value("logbroker_mqtt_too_large_total"); n == 0 {
					t.Errorf("logbroker_mqtt_too_large_total is 0 after the tiny-packet attack")
				}
			}
		})
	}
}
