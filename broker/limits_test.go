package broker

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

// TestMaxKeepalive checks Limits.MaxKeepalive for both protocol versions.
func TestMaxKeepalive(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxKeepalive: 60 * time.Second}})
	for _, tc := range []struct {
		name   string
		ask    int
		server []byte // Server Keep Alive in the CONNACK; nil: none
	}{
		{"Above", 120, []byte{0, 60}},
		{"None", 0, []byte{0, 60}},
		{"Below", 30, nil},
		{"Equal", 60, nil},
	} {
		t.Run("MQTT5/"+tc.name, func(t *testing.T) {
			c := dialWire(t, b.MQTTAddr())
			ack := c.connack(connectV5("ka5-"+tc.name, tc.ask, nil))
			if ack[3] != 0 {
				t.Fatalf("CONNACK % x: refused", ack)
			}
			got, ok := connackProps(t, ack)[0x13]
			if !bytes.Equal(got, tc.server) || ok != (tc.server != nil) {
				t.Fatalf("Server Keep Alive % x (present %v), want % x", got, ok, tc.server)
			}
		})
	}
	for _, tc := range []struct {
		name string
		ask  int
		code byte
	}{
		{"Above", 120, 2},
		{"None", 0, 2},
		{"Below", 30, 0},
		{"Equal", 60, 0},
	} {
		t.Run("MQTT311/"+tc.name, func(t *testing.T) {
			c := dialWire(t, b.MQTTAddr())
			ack := c.connack(connectV3("ka3-"+tc.name, tc.ask, true))
			if !bytes.Equal(ack, []byte{0x20, 0x02, 0x00, tc.code}) {
				t.Fatalf("CONNACK % x, want return code %d", ack, tc.code)
			}
			if tc.code != 0 {
				if _, err := c.next(waitFor); err == nil {
					t.Fatal("a refused connection stays open")
				}
			}
		})
	}
	if got := b.LimitStats().KeepaliveRefused; got != 2 {
		t.Errorf("KeepaliveRefused %d, want 2", got)
	}
}

// TestMaxKeepaliveEnforced checks that the lowered keep-alive is the one
// mochi enforces: a silent MQTT 5 client that asked for none is closed
// after 1.5 times the maximum.
func TestMaxKeepaliveEnforced(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxKeepalive: time.Second}})
	c := dialWire(t, b.MQTTAddr())
	c.connack(connectV5("silent", 0, nil))
	_, err := c.next(waitFor)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent client with keep-alive lowered to 1 s: %v after %v, want the connection closed", err, waitFor)
	}
}
