package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// TestSecured_RateLimit: --rate calls per second per connection, after a
// burst of --rate-burst; more are answered 429. Other connections have
// their own bucket.
func TestSecured_RateLimit(t *testing.T) {
	t.Parallel()
	// 0.1 call/s: a token every 10 s, so the test does not depend on how
	// fast a busy machine sends the 5 calls.
	s := start(t, "--auth", writeUsers(t, secFleet...), "--rate", "0.1", "--rate-burst", "2", "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT
	dev1 := dialAs(t, url, "dev1")
	var waits []func(time.Duration) (response, bool)
	for range 5 {
		waits = append(waits, dev1.send(map[string]any{"method": "Log.List"}, ""))
	}
	for i, wait := range waits {
		r, ok := wait(callTimeout)
		if !ok {
			t.Fatalf("call %d: no response", i+1)
		}
		if i < 2 {
			r.entries(t)
			continue
		}
		if e := r.fails(t, 429); !strings.Contains(e.Message, "rate") {
			t.Errorf("call %d: 429 message %q does not say rate", i+1, e.Message)
		}
	}
	// Another connection, even of the same identity, has its own bucket.
	dialAs(t, url, "dev1").call(map[string]any{"method": "Log.List"}, "").entries(t)
	dialAs(t, url, "dev2").call(map[string]any{"method": "Log.List"}, "").entries(t)
}

// TestSecured_Limits: connections per identity, MQTT packet size, waiting
// follows per connection and msg size, on one broker.
func TestSecured_Limits(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--max-conns-per-user", "2", "--max-packet", "4096",
		"--max-follows", "2", "--max-msg", "1024", "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT

	t.Run("MaxConnsPerUser", func(t *testing.T) {
		a := dialAs(t, url, "dev1")
		dialAs(t, url, "dev1")
		_, err := tryDial(t, url, dialOpts{user: "dev1", password: password("dev1")})
		if !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
			t.Fatalf("3rd connection of dev1: %v, want CONNACK 3 server unavailable", err)
		}
		if code := rawConnack(t, s.MQTT, 5, "dev1", password("dev1")); code != 0x97 {
			t.Errorf("3rd connection of dev1 over MQTT 5: CONNACK %#x, want 0x97 quota exceeded", code)
		}
		s.waitLogLines(`msg="connection refused"`, 2, callTimeout)
		if !strings.Contains(s.logs(), "too many connections for this identity") {
			t.Error("the refusal does not say why")
		}
		dialAs(t, url, "dev2").pingBarrier() // other identities unaffected
		// Once one leaves, dev1 may connect again.
		a.pc.Disconnect(50)
		s.waitLogLines(`msg="client disconnected" client=`+a.id+" ", 1, callTimeout)
		dialAs(t, url, "dev1").pingBarrier()
	})
	t.Run("MaxConnsPerUserConcurrent", func(t *testing.T) {
		// Simultaneous connects cannot all pass the check.
		const n = 8
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := tryDial(t, url, dialOpts{user: "ops", password: password("ops")})
				errs <- err
			}()
		}
		ok := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, packets.ErrorRefusedServerUnavailable):
				t.Errorf("connect: %v, want success or CONNACK 3", err)
			}
		}
		if ok != 2 {
			t.Fatalf("%d of %d simultaneous connections of ops accepted, want 2", ok, n)
		}
	})
	t.Run("MaxPacket", func(t *testing.T) {
		c := dialAs(t, url, "dash")
		// Just under the limit: an ordinary call.
		c.call(map[string]any{"method": "Log.List", "tag": strings.Repeat("t", 3000)}, "").entries(t)
		// Over it: the broker drops the connection.
		c.publish("logbroker/rpc", 0, false, []byte(`{"id":1,"src":"dash","method":"RPC.Ping","tag":"`+strings.Repeat("x", 8000)+`"}`))
		c.waitDropped(callTimeout)
		dialAs(t, url, "dash").pingBarrier() // the broker itself is fine
	})
	t.Run("MaxFollows", func(t *testing.T) {
		c := dialAs(t, url, "ops")
		follow := map[string]any{"method": "Log.List", "args": map[string]any{"src": "nobody", "follow": true}, "timeout": 60}
		w1 := c.send(follow, "")
		w2 := c.send(follow, "")
		r := c.call(follow, "")
		if e := r.fails(t, 429); !strings.Contains(e.Message, "follow") {
			t.Errorf("3rd follow: 429 message %q does not say follow", e.Message)
		}
		// The two waiting ones are still waiting; a new entry answers them.
		c.log(map[string]any{"src": "nobody", "msg": "wake"})
		for i, w := range []func(time.Duration) (response, bool){w1, w2} {
			r, ok := w(callTimeout)
			if !ok {
				t.Fatalf("follow %d not answered by the new entry", i+1)
			}
			if es := r.entries(t); len(es) != 1 {
				t.Errorf("follow %d answered %s", i+1, r.Raw)
			}
		}
		// Slots are free again.
		w3 := c.send(map[string]any{"method": "Log.List", "args": map[string]any{"src": "nobody", "follow": true, "last": 0}, "timeout": 1}, "")
		if r, ok := w3(callTimeout); !ok {
			t.Fatal("a follow after the others ended got no answer")
		} else if r.Error != nil {
			t.Fatalf("a follow after the others ended: %s", r.Raw)
		}
	})
	t.Run("MaxMsg", func(t *testing.T) {
		c := dialAs(t, url, "dev2")
		c.call(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": strings.Repeat("m", 2000)}}, "").fails(t, 413)
		c.log(map[string]any{"msg": strings.Repeat("m", 1000)})
	})
}
