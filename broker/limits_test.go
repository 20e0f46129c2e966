package broker

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/logbroker/logbroker/integration/await"
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

// TestConnectTimeout checks Limits.ConnectTimeout.
func TestConnectTimeout(t *testing.T) {
	b := startBroker(t, Config{WSAddr: "127.0.0.1:0", Limits: Limits{ConnectTimeout: 300 * time.Millisecond}})

	// Connected in time, with no keep-alive: the connect deadline is lifted.
	kept := dialWire(t, b.MQTTAddr())
	kept.connack(connectV5("kept", 0, nil))
	// The same over a WebSocket.
	keptWS, _, err := websocket.DefaultDialer.Dial("ws://"+b.WSAddr()+"/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer keptWS.Close()
	wsExchange := func(pk []byte) []byte {
		t.Helper()
		if err := keptWS.WriteMessage(websocket.BinaryMessage, pk); err != nil {
			t.Fatal(err)
		}
		_ = keptWS.SetReadDeadline(time.Now().Add(waitFor))
		_, got, err := keptWS.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if ack := wsExchange(connectV5("kept-ws", 0, nil)); len(ack) < 4 || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("WebSocket CONNACK % x", ack)
	}

	t.Run("Silent", func(t *testing.T) {
		dialWire(t, b.MQTTAddr()).closed()
	})
	t.Run("HalfConnect", func(t *testing.T) {
		c := dialWire(t, b.MQTTAddr())
		c.write(connectV5("half", 0, nil)[:6])
		c.closed()
	})
	t.Run("WebSocketWithoutUpgrade", func(t *testing.T) {
		// The HTTP server's own header timeout is 10 s.
		dialWire(t, b.WSAddr()).closed()
	})
	t.Run("WebSocketWithoutConnect", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.WSAddr()+"/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(waitFor))
		var ne net.Error
		if _, _, err := ws.ReadMessage(); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read: %v, want the connection closed", err)
		}
	})
	t.Run("ManySilent", func(t *testing.T) {
		// Issue 11: 5,000 such connections stayed for good, two
		// goroutines each. Here every one is closed, and no socket is left
		// open but kept's and keptWS's.
		conns := make([]*wireConn, 200)
		for i := range conns {
			conns[i] = dialWire(t, b.MQTTAddr())
		}
		for _, c := range conns {
			c.closed()
		}
		await.Until(t, waitFor, "2 sockets open (kept and keptWS)", func() bool { return b.limits.conns.open.Load() == 2 })
	})
	t.Run("ConnectedStays", func(t *testing.T) {
		// Every subtest above was accepted after kept and timed out: kept
		// is past its connect deadline too, and must still be served.
		kept.write([]byte{0xC0, 0}) // PINGREQ
		if pk := kept.read(); !bytes.Equal(pk, []byte{0xD0, 0}) {
			t.Fatalf("got % x, want PINGRESP", pk)
		}
		if pk := wsExchange([]byte{0xC0, 0}); !bytes.Equal(pk, []byte{0xD0, 0}) {
			t.Fatalf("WebSocket: got % x, want PINGRESP", pk)
		}
	})
	if got := b.LimitStats().ConnectTimeouts; got != 204 {
		t.Errorf("ConnectTimeouts %d, want 204", got)
	}
}

// TestMaxConns checks Limits.MaxConns.
func TestMaxConns(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxConns: 2}})
	first := dialWire(t, b.MQTTAddr())
	first.connack(connectV5("first", 60, nil))
	second := dialWire(t, b.MQTTAddr())
	second.connack(connectV3("second", 60, true))

	over5 := dialWire(t, b.MQTTAddr())
	if ack := over5.connack(connectV5("over5", 60, nil)); ack[3] != 0x97 {
		t.Errorf("MQTT 5 over the limit: CONNACK % x, want reason 0x97", ack)
	}
	over5.closed()
	over3 := dialWire(t, b.MQTTAddr())
	if ack := over3.connack(connectV3("over3", 60, true)); !bytes.Equal(ack, []byte{0x20, 2, 0, 3}) {
		t.Errorf("MQTT 3.1.1 over the limit: CONNACK % x, want return code 3", ack)
	}
	over3.closed()
	if got := b.LimitStats().ConnsRefused; got != 2 {
		t.Errorf("ConnsRefused %d, want 2", got)
	}

	// Room again once one leaves.
	first.conn.Close()
	await.Until(t, waitFor, "one connection counted open after the others closed", func() bool { return b.limits.conns.open.Load() <= 1 })
	if ack := dialWire(t, b.MQTTAddr()).connack(connectV5("again", 60, nil)); ack[3] != 0 {
		t.Errorf("after one left: CONNACK % x, want success", ack)
	}
}

// subscribeV5 is an MQTT 5 SUBSCRIBE at QoS 1 of filters.
func subscribeV5(id int, filters ...string) []byte {
	var w wire
	w.u16(id).u8(0)
	for _, f := range filters {
		w.str(f).u8(1)
	}
	return packet(0x82, w.Bytes())
}

// subscribeV3 is an MQTT 3.1.1 SUBSCRIBE at QoS 1 of filters.
func subscribeV3(id int, filters ...string) []byte {
	var w wire
	w.u16(id)
	for _, f := range filters {
		w.str(f).u8(1)
	}
	return packet(0x82, w.Bytes())
}

// TestMaxSubsPerClient checks Limits.MaxSubsPerClient.
func TestMaxSubsPerClient(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxSubsPerClient: 3}})
	subscribed := func(filter, client string) bool {
		_, ok := b.srv.Topics.Subscribers(filter).Subscriptions[client]
		return ok
	}
	t.Run("MQTT5", func(t *testing.T) {
		c := dialWire(t, b.MQTTAddr())
		c.connack(connectV5("subs5", 60, nil))
		c.write(subscribeV5(1, "a", "b"))
		if got := c.read(); !bytes.Equal(got, []byte{0x90, 5, 0, 1, 0, 1, 1}) {
			t.Fatalf("SUBACK % x", got)
		}
		// a is held already and takes no room; c takes the last; d, e and d
		// again are over.
		c.write(subscribeV5(2, "a", "c", "d", "e", "d"))
		if got := c.read(); !bytes.Equal(got, []byte{0x90, 8, 0, 2, 0, 1, 1, 0x97, 0x97, 0x97}) {
			t.Fatalf("SUBACK % x, want a and c granted, the rest 0x97", got)
		}
		if !subscribed("c", "subs5") || subscribed("d", "subs5") || subscribed("e", "subs5") {
			t.Error("the subscriptions held do not match the SUBACK")
		}
	})
	t.Run("MQTT311PersistentSession", func(t *testing.T) {
		c := dialWire(t, b.MQTTAddr())
		c.connack(connectV3("subs3", 60, false))
		c.write(subscribeV3(1, "x", "y", "z"))
		if got := c.read(); !bytes.Equal(got, []byte{0x90, 5, 0, 1, 1, 1, 1}) {
			t.Fatalf("SUBACK % x", got)
		}
		c.conn.Close()
		// The session keeps its three across the reconnect.
		again := dialWire(t, b.MQTTAddr())
		if ack := again.connack(connectV3("subs3", 60, false)); !bytes.Equal(ack, []byte{0x20, 2, 1, 0}) {
			t.Fatalf("reconnect: CONNACK % x, want the session present", ack)
		}
		again.write(subscribeV3(2, "w"))
		if got := again.read(); !bytes.Equal(got, []byte{0x90, 3, 0, 2, 0x80}) {
			t.Fatalf("SUBACK % x, want 0x80", got)
		}
		if subscribed("w", "subs3") {
			t.Error("w subscribed although refused")
		}
	})
	if got := b.LimitStats().SubsRefused; got != 4 {
		t.Errorf("SubsRefused %d, want 4", got)
	}
}

// persistV3 subscribes a 3.1.1 persistent session of id to filter and
// disconnects.
func persistV3(t *testing.T, addr, id, filter string) {
	c := dialWire(t, addr)
	c.connack(connectV3(id, 60, false))
	c.write(subscribeV3(1, filter))
	c.read()
	c.write([]byte{0xE0, 0}) // DISCONNECT
	c.closed()
}

// awaitExpired waits until srv no longer holds the session id.
func awaitExpired(t *testing.T, srv *mqtt.Server, id string) {
	await.Until(t, waitFor, "session "+id+" expired after its client left", func() bool {
		_, ok := srv.Clients.Get(id)
		return !ok
	})
}

// TestSessionExpiry checks Limits.SessionExpiryMax; mochi's own expiry is
// TestMochiQuirk_ExpiredSessionKeepsSubscriptions.
func TestSessionExpiry(t *testing.T) {
	t.Run("MQTT311", func(t *testing.T) {
		b := startBroker(t, Config{Limits: Limits{SessionExpiryMax: time.Second}})
		persistV3(t, b.MQTTAddr(), "gone", "m/1")
		awaitExpired(t, b.srv, "gone")
		if _, ok := b.srv.Topics.Subscribers("m/1").Subscriptions["gone"]; ok {
			t.Fatal("an expired session's subscription is still in the topic index")
		}
		if got := b.LimitStats().SessionsExpired; got != 1 {
			t.Errorf("SessionsExpired %d, want 1", got)
		}
	})
	t.Run("MQTT5", func(t *testing.T) {
		b := startBroker(t, Config{Limits: Limits{SessionExpiryMax: time.Second}})
		c := dialWire(t, b.MQTTAddr())
		ack := c.connack(connectV5("long", 60, []byte{0x11, 0, 0, 0x0e, 0x10})) // asks for 3600 s
		if got := connackProps(t, ack)[0x11]; !bytes.Equal(got, []byte{0, 0, 0, 1}) {
			t.Fatalf("CONNACK Session Expiry Interval % x, want 1 s", got)
		}
		c.write(subscribeV5(1, "m/2"))
		c.read()
		// A DISCONNECT cannot raise it again.
		c.write(packet(0xE0, append([]byte{0}, props([]byte{0x11, 0, 0, 0x0e, 0x10})...)))
		c.closed()
		awaitExpired(t, b.srv, "long")
		if _, ok := b.srv.Topics.Subscribers("m/2").Subscriptions["long"]; ok {
			t.Fatal("an expired session's subscription is still in the topic index")
		}
	})
}
