package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testConfig is serve's defaults on loopback port 0 and a fresh directory.
func testConfig(t *testing.T) *serveConfig {
	t.Helper()
	fs, c := serveFlags(io.Discard)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	c.mqttAddr, c.wsAddr, c.httpAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.dataDir = filepath.Join(t.TempDir(), "data")
	return c
}

func startTestNode(t *testing.T, c *serveConfig) (*node, error) {
	t.Helper()
	// Discarded: a line logged by a goroutine after the test ended would
	// panic in t.Log.
	log, err := newLogger(io.Discard, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	return startNode(c, log)
}

func closeNode(t *testing.T, n *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n.Close(ctx)
}

func TestStartNode(t *testing.T) {
	t.Run("StartsServesAndCloses", func(t *testing.T) {
		c := testConfig(t)
		n, err := startTestNode(t, c)
		if err != nil {
			t.Fatalf("startNode: %v", err)
		}
		if n.broker.MQTTAddr() == "" || n.broker.WSAddr() == "" || n.httpAddr == "" {
			t.Errorf("bound addresses mqtt=%q ws=%q http=%q: want all three", n.broker.MQTTAddr(), n.broker.WSAddr(), n.httpAddr)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + n.httpAddr + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %s, want 200", resp.Status)
		}
		closeNode(t, n)
		if conn, err := net.DialTimeout("tcp", n.broker.MQTTAddr(), time.Second); err == nil {
			conn.Close()
			t.Errorf("MQTT listener %s still accepts after Close", n.broker.MQTTAddr())
		}
		// The store was closed: the same directory opens again.
		n2, err := startTestNode(t, c)
		if err != nil {
			t.Fatalf("startNode again on the same directory: %v", err)
		}
		closeNode(t, n2)
	})
	t.Run("UnwindsWhenHTTPCannotListen", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		c := testConfig(t)
		c.httpAddr = busy.Addr().String()
		if n, err := startTestNode(t, c); err == nil {
			closeNode(t, n)
			t.Fatalf("startNode with --http on a busy port %s succeeded", c.httpAddr)
		} else if !strings.Contains(err.Error(), "listen http") {
			t.Errorf("error %q, want it to name the http listener", err)
		}
		// Everything opened before the failure was closed again: the store
		// (its lock) and the MQTT listener.
		c.httpAddr = "127.0.0.1:0"
		n, err := startTestNode(t, c)
		if err != nil {
			t.Fatalf("startNode after the failed start: %v", err)
		}
		closeNode(t, n)
	})
	t.Run("RefusesOpenModeOffLoopbackBeforeTouchingDisk", func(t *testing.T) {
		c := testConfig(t)
		c.mqttAddr = "0.0.0.0:0"
		n, err := startTestNode(t, c)
		if err == nil {
			closeNode(t, n)
			t.Fatal("open mode on 0.0.0.0 started")
		}
		if !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("error %q, want the loopback explanation", err)
		}
		if _, err := os.Stat(c.dataDir); !os.IsNotExist(err) {
			t.Errorf("data directory %s exists after a refused start (stat: %v)", c.dataDir, err)
		}
	})
}
