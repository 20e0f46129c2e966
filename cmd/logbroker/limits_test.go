package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLimitFlags(t *testing.T) {
	t.Run("DefaultsAndEnvironment", func(t *testing.T) {
		t.Setenv("LOGBROKER_MAX_CONNS", "7")
		t.Setenv("LOGBROKER_MAX_KEEPALIVE", "90s")
		fs, c := serveFlags(io.Discard)
		if err := parseFlags(fs, []string{"--max-subs-per-client", "5"}); err != nil {
			t.Fatal(err)
		}
		want := limitFlags{maxKeepalive: 90 * time.Second, connectTimeout: 10 * time.Second, maxConns: 7, maxSubsPerClient: 5, sessionExpiryMax: time.Hour}
		if c.limits != want {
			t.Fatalf("got %+v, want %+v", c.limits, want)
		}
		if err := c.limits.check(); err != nil {
			t.Fatal(err)
		}
	})
	for _, args := range [][]string{
		{"--max-keepalive", "1500ms"},
		{"--max-keepalive", "65536s"},
		{"--connect-timeout", "-1s"},
		{"--max-conns", "-1"},
		{"--max-subs-per-client", "-1"},
		{"--session-expiry-max", "-1s"},
	} {
		t.Run("Refuses"+args[0]+args[1], func(t *testing.T) {
			fs, c := serveFlags(io.Discard)
			if err := parseFlags(fs, args); err != nil {
				t.Fatal(err)
			}
			err := c.limits.check()
			if err == nil || !strings.Contains(err.Error(), args[0]) {
				t.Fatalf("check: %v, want an error naming %s", err, args[0])
			}
		})
	}
}

// TestLimitMetrics checks that the limits' counters reach /metrics.
func TestLimitMetrics(t *testing.T) {
	c := testConfig(t)
	c.limits.connectTimeout = 100 * time.Millisecond
	n, err := startTestNode(t, c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeNode(t, n)
	conn, err := net.Dial("tcp", n.broker.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read: %v, want the connection closed by the server", err)
	}
	resp, err := http.Get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range []string{
		"logbroker_mqtt_connect_timeouts_total 1",
		"logbroker_mqtt_connections_refused_total 0",
		"logbroker_mqtt_subscriptions_refused_total 0",
		"logbroker_mqtt_sessions_expired_total 0",
		"logbroker_mqtt_keepalive_refused_total 0",
	} {
		if !strings.Contains(string(body), "\n"+line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}
