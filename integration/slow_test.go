package integration

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSlowSubscriber checks that a subscriber to everything that never
// reads its socket does not stall the broker: other clients' calls and
// live entries keep flowing (its own queue overflows and drops instead).
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	s := start(t)
	stuck, err := net.DialTimeout("tcp", s.MQTT, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stuck.Close() })
	// MQTT 3.1.1 CONNECT (client id "stuck", clean session, keepalive 0),
	// then SUBSCRIBE to "#" at QoS 1. It never reads a byte after that.
	connect := []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 5, 's', 't', 'u', 'c', 'k'}
	subscribe := []byte{0x82, 6, 0, 1, 0, 1, '#', 1}
	if _, err := stuck.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	c := s.dial(t)
	// Wait until mochi counts the stuck client among the connected ones
	// (stuck, c, watch): its SUBSCRIBE came in the same write as CONNECT.
	watch := s.dial(t)
	watch.subscribe("$SYS/broker/clients/connected", 0)
	watch.waitMsg(0, 3*callTimeout, "3 clients connected", func(m message) bool {
		return m.Topic == "$SYS/broker/clients/connected" && string(m.Payload) == "3"
	})
	watch.subscribe(c.src+"/log/#", 0)

	const n = 600
	msg := strings.Repeat("x", 16<<10)
	waits := make([]func(time.Duration) (response, bool), 0, n)
	for i := range n {
		waits = append(waits, c.send(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": fmt.Sprint(i, msg)}}, ""))
	}
	for i, w := range waits {
		r, ok := w(4 * callTimeout)
		if !ok {
			t.Fatalf("call %d of %d not answered while a subscriber is stuck", i, n)
		}
		r.logID(t)
	}
	// A fresh client is served at once, and live entries still reach a
	// reading subscriber.
	s.answers(t)
	if got := watch.count(0, c.src+"/log/console"); got == 0 {
		t.Errorf("no live entries reached a reading subscriber")
	}
}
