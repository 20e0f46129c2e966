package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/integration/await"
)

// rawClient is an MQTT client on a plain socket, speaking through mochi's
// packet codec, so a test sets any property and sees every packet.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	v    byte // protocol version
}

func dialClient(t *testing.T, b *Broker, id string, v byte, props packets.Properties) *rawClient {
	t.Helper()
	c := dialRaw(t, b, id, v, false, props)
	if got := c.read(); got.FixedHeader.Type != packets.Connack || got.ReasonCode != 0 {
		t.Fatalf("connect %s: got %v, reason %#x", id, got.FixedHeader.Type, got.ReasonCode)
	}
	return c
}

func (c *rawClient) send(encode func(*bytes.Buffer) error) {
	c.t.Helper()
	var buf bytes.Buffer
	if err := encode(&buf); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next packet, failing the test after waitFor.
func (c *rawClient) read() packets.Packet {
	c.t.Helper()
	pk, err := c.next(waitFor)
	if err != nil {
		c.t.Fatal(err)
	}
	return pk
}

func (c *rawClient) next(d time.Duration) (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	hb, err := c.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	pk := packets.Packet{ProtocolVersion: c.v}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	}
	return pk, err
}

func (c *rawClient) subscribe(id uint16, subs ...packets.Subscription) {
	c.t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: c.v,
		PacketID:        id,
		Filters:         subs,
	}
	if c.v == 5 && subs[0].Identifier > 0 {
		pk.Properties.SubscriptionIdentifier = []int{subs[0].Identifier}
	}
	c.send(pk.SubscribeEncode)
	got := c.read()
	if got.FixedHeader.Type != packets.Suback {
		c.t.Fatalf("subscribe: got %v, want SUBACK", got.FixedHeader.Type)
	}
	for i, code := range got.ReasonCodes {
		if code >= 0x80 {
			c.t.Fatalf("subscribe %q refused: %#x", subs[i].Filter, code)
		}
	}
}

// topicACL is an ACL hook: clients may subscribe to any filter and read
// any topic except those under a denied prefix.
type topicACL struct {
	mqtt.HookBase
	denied string
}

func (h *topicACL) ID() string { return "test-acl" }
func (h *topicACL) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *topicACL) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *topicACL) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	return write || !strings.HasPrefix(topic, h.denied)
}

func startLive(t *testing.T, cfg Config, hook mqtt.Hook) *Broker {
	t.Helper()
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.DrainTimeout = -1
	b := New(cfg)
	if err := b.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func live(topic, payload string) packets.Packet {
	return packets.Packet{TopicName: topic, Payload: []byte(payload)}
}

// TestPublishLive checks live (QoS 0) messages through the outboxes.
func TestPublishLive(t *testing.T) {
	t.Run("NoDropsWithATinyQueue", func(t *testing.T) {
		// A one-slot client queue: through mochi's queue, a burst to a
		// subscriber drops nearly everything. Written directly, every
		// message arrives, in order.
		b := startLive(t, Config{ClientQueue: 1}, new(auth.AllowHook))
		dash := dialClient(t, b, "dash", 4, packets.Properties{})
		dash.subscribe(1, packets.Subscription{Filter: "+/log/#"})
		const n = 5000
		got := make(chan error, 1)
		go func() {
			for i := range n {
				pk, err := dash.next(waitFor)
				if err != nil {
					got <- fmt.Errorf("message %d: %w", i, err)
					return
				}
				if want := fmt.Sprint(i); pk.TopicName != "dev/log/console" || string(pk.Payload) != want {
					got <- fmt.Errorf("message %d: %q on %q, want %q on dev/log/console", i, pk.Payload, pk.TopicName, want)
					return
				}
			}
			got <- nil
		}()
		for i := range n {
			if err := b.Publish(live("dev/log/console", fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if d := b.Drops(); d.Messages != 0 {
			t.Errorf("Drops().Messages = %d, want 0", d.Messages)
		}
	})

	t.Run("ReadACL", func(t *testing.T) {
		b := startLive(t, Config{}, &topicACL{denied: "secret/"})
		dash := dialClient(t, b, "dash", 4, packets.Properties{})
		dash.subscribe(1, packets.Subscription{Filter: "+/log/#"})
		for _, topic := range []string{"secret/log/console", "dev/log/console"} {
			if err := b.Publish(live(topic, `"x"`)); err != nil {
				t.Fatal(err)
			}
		}
		if pk := dash.read(); pk.TopicName != "dev/log/console" {
			t.Errorf("first message on %q, want dev/log/console (secret/ is not readable)", pk.TopicName)
		}
	})

	t.Run("NoACLHookDeniesAsMochi", func(t *testing.T) {
		// mochi denies every topic when no hook checks ACLs (it
		// refuses the subscription as well); nothing may reach the
		// client either way.
		b := startLive(t, Config{}, new(connectOnly))
		dash := dialClient(t, b, "dash", 4, packets.Properties{})
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 4, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "+/log/#"}},
		}
		dash.send(pk.SubscribeEncode)
		_ = dash.read() // SUBACK, refused or not
		if err := b.Publish(live("dev/log/console", `"x"`)); err != nil {
			t.Fatal(err)
		}
		if pk, err := dash.next(300 * time.Millisecond); err == nil {
			t.Errorf("got %v on %q, want nothing without an ACL hook", pk.FixedHeader.Type, pk.TopicName)
		}
	})

	t.Run("MQTT5SubscriptionIdentifier", func(t *testing.T) {
		b := startLive(t, Config{}, new(auth.AllowHook))
		dash := dialClient(t, b, "dash5", 5, packets.Properties{TopicAliasMaximum: 4})
		dash.subscribe(1, packets.Subscription{Filter: "+/log/#", Identifier: 7})
		for range 2 {
			if err := b.Publish(live("dev/log/console", `"x"`)); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			pk := dash.read()
			if ids := pk.Properties.SubscriptionIdentifier; len(ids) != 1 || ids[0] != 7 {
				t.Errorf("subscription identifiers %v, want [7]", ids)
			}
			// The broker uses no outbound topic alias (it may: MQTT 5 §3.3.2.3.4).
			if pk.TopicName != "dev/log/console" {
				t.Errorf("topic %q alias %d, want the topic name", pk.TopicName, pk.Properties.TopicAlias)
			}
		}
	})

	t.Run("SharedSubscription", func(t *testing.T) {
		b := startLive(t, Config{}, new(auth.AllowHook))
		var got []*rawClient
		for _, id := range []string{"s1", "s2"} {
			c := dialClient(t, b, id, 5, packets.Properties{})
			c.subscribe(1, packets.Subscription{Filter: "$share/g/+/log/#"})
			got = append(got, c)
		}
		if err := b.Publish(live("dev/log/console", `"x"`)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range got {
			if _, err := c.next(500 * time.Millisecond); err == nil {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d of the group's 2 members got the message, want exactly 1", n)
		}
	})

	t.Run("RetainedTakesMochisPath", func(t *testing.T) {
		b := startLive(t, Config{}, new(auth.AllowHook))
		pk := live("dev/state", `"on"`)
		pk.FixedHeader.Retain = true
		if err := b.Publish(pk); err != nil {
			t.Fatal(err)
		}
		late := dialClient(t, b, "late", 4, packets.Properties{})
		late.subscribe(1, packets.Subscription{Filter: "dev/state"})
		if got := late.read(); string(got.Payload) != `"on"` || !got.FixedHeader.Retain {
			t.Errorf("retained message: %q retain=%v, want \"on\" retained", got.Payload, got.FixedHeader.Retain)
		}
	})
}

// connectOnly lets every client connect and checks no ACL.
type connectOnly struct{ mqtt.HookBase }

func (connectOnly) ID() string                                              { return "test-connect-only" }
func (connectOnly) Provides(b byte) bool                                    { return b == mqtt.OnConnectAuthenticate }
func (connectOnly) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// ack sends PUBACK for a QoS 1 message.
func (c *rawClient) ack(pk packets.Packet) {
	c.t.Helper()
	a := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: c.v, PacketID: pk.PacketID}
	c.send(a.PubackEncode)
}

func response(topic string, i int) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Qos: 1}, TopicName: topic, Payload: fmt.Appendf(nil, `{"id":%d}`, i)}
}

// TestOutbox checks the outbound path of QoS 1 messages (outbox.go).
func TestOutbox(t *testing.T) {
	t.Run("InOrderWithInflightRecords", func(t *testing.T) {
		b := startLive(t, Config{ClientQueue: 1}, new(auth.AllowHook))
		dev := dialClient(t, b, "dev", 4, packets.Properties{})
		dev.subscribe(1, packets.Subscription{Filter: "dev/rpc", Qos: 1})
		const n = 3000
		for i := range n {
			if err := b.Publish(response("dev/rpc", i)); err != nil {
				t.Fatal(err)
			}
		}
		cl, _ := b.srv.Clients.Get("dev")
		ids := map[uint16]bool{}
		for i := range n {
			pk := dev.read()
			if want := fmt.Sprintf(`{"id":%d}`, i); string(pk.Payload) != want || pk.FixedHeader.Qos != 1 || pk.PacketID == 0 {
				t.Fatalf("message %d: %q qos %d id %d, want %s at QoS 1 with a packet id", i, pk.Payload, pk.FixedHeader.Qos, pk.PacketID, want)
			}
			if ids[pk.PacketID] {
				t.Fatalf("packet id %d used twice while unacknowledged", pk.PacketID)
			}
			ids[pk.PacketID] = true
			if len(ids) == inflightWindow {
				// The window is full: nothing more comes until PUBACKs.
				// (Checked on the first window only: mochi deletes the
				// record of a PUBACK after the outbox has counted it.)
				if got := cl.State.Inflight.Len(); i < inflightWindow && got != inflightWindow {
					t.Errorf("%d in-flight records with the window full, want %d", got, inflightWindow)
				}
				for id := range ids {
					dev.ack(packets.Packet{PacketID: id})
				}
				clear(ids)
			}
		}
		for id := range ids {
			dev.ack(packets.Packet{PacketID: id})
		}
		waitIdle(t, b)
		if d := b.Drops(); d.Messages != 0 || d.Inflight != 0 {
			t.Errorf("drops %+v, want none", d)
		}
	})

	t.Run("PersistentSessionGetsItOnReconnect", func(t *testing.T) {
		b := startLive(t, Config{}, new(auth.AllowHook))
		again := dialPersistent(t, b, "pdev2")
		again.subscribe(1, packets.Subscription{Filter: "pdev2/rpc", Qos: 1})
		again.conn.Close()
		if cl, ok := b.srv.Clients.Get("pdev2"); ok {
			await.Until(t, waitFor, "pdev2's connection closed", cl.Closed)
		}
		if err := b.Publish(response("pdev2/rpc", 7)); err != nil {
			t.Fatal(err)
		}
		back := dialPersistent(t, b, "pdev2")
		if pk := back.read(); string(pk.Payload) != `{"id":7}` || pk.FixedHeader.Qos != 1 {
			t.Errorf("after reconnecting: %q at QoS %d, want the response sent while offline", pk.Payload, pk.FixedHeader.Qos)
		}
	})

	t.Run("ReceiveMaximumWaitsAndLosesNothing", func(t *testing.T) {
		// An MQTT 5 client that can take 10 messages unacknowledged gets
		// 10, then one more per PUBACK, then the rest, in order, none lost.
		b := startLive(t, Config{}, new(auth.AllowHook))
		dev := dialClient(t, b, "dev5", 5, packets.Properties{ReceiveMaximum: 10})
		dev.subscribe(1, packets.Subscription{Filter: "dev5/rpc", Qos: 1})
		const n = 500
		for i := range n {
			if err := b.Publish(response("dev5/rpc", i)); err != nil {
				t.Fatal(err)
			}
		}
		var held []packets.Packet
		for range 10 {
			held = append(held, dev.read())
		}
		if pk, err := dev.next(300 * time.Millisecond); err == nil {
			t.Fatalf("got message %q past the Receive Maximum of 10", pk.Payload)
		}
		dev.ack(held[0])
		held = append(held[1:], dev.read())
		if pk, err := dev.next(300 * time.Millisecond); err == nil {
			t.Fatalf("got message %q past the Receive Maximum after one PUBACK", pk.Payload)
		}
		next := 1
		for _, pk := range held {
			if want := fmt.Sprintf(`{"id":%d}`, next); string(pk.Payload) != want {
				t.Fatalf("message %d: %q, want %s", next, pk.Payload, want)
			}
			next++
			dev.ack(pk)
		}
		for ; next < n; next++ {
			pk := dev.read()
			if want := fmt.Sprintf(`{"id":%d}`, next); string(pk.Payload) != want {
				t.Fatalf("message %d: %q, want %s", next, pk.Payload, want)
			}
			dev.ack(pk)
		}
		waitIdle(t, b)
	})

	t.Run("TooLargeDiscardedAsIfSent", func(t *testing.T) {
		// Maximum Packet Size 64: a larger answer is discarded (counted),
		// the next one arrives, and nothing waits for the discarded one.
		b := startLive(t, Config{}, new(auth.AllowHook))
		dev := dialClient(t, b, "small", 5, packets.Properties{MaximumPacketSize: 64})
		dev.subscribe(1, packets.Subscription{Filter: "small/rpc", Qos: 1})
		big := response("small/rpc", 1)
		big.Payload = bytes.Repeat([]byte("x"), 100)
		for _, pk := range []packets.Packet{big, response("small/rpc", 2)} {
			if err := b.Publish(pk); err != nil {
				t.Fatal(err)
			}
		}
		pk := dev.read()
		if string(pk.Payload) != `{"id":2}` {
			t.Fatalf("got %q, want only the answer that fits", pk.Payload)
		}
		dev.ack(pk)
		if d := b.Drops(); d.TooLarge != 1 {
			t.Errorf("Drops().TooLarge = %d, want 1", d.TooLarge)
		}
		waitIdle(t, b)
	})

	t.Run("SlowConsumerDisconnected", func(t *testing.T) {
		// Receive Maximum 1 and no PUBACK: answers pile up in the outbox
		// until they pass its bound; the client is disconnected, once.
		b := startLive(t, Config{MaxPending: 4096}, new(auth.AllowHook))
		dev := dialClient(t, b, "stuck", 5, packets.Properties{ReceiveMaximum: 1})
		dev.subscribe(1, packets.Subscription{Filter: "stuck/rpc", Qos: 1})
		for i := range 100 {
			if err := b.Publish(response("stuck/rpc", i)); err != nil {
				t.Fatal(err)
			}
		}
		for {
			pk, err := dev.next(waitFor)
			if err != nil {
				break // the connection was closed
			}
			if pk.FixedHeader.Type == packets.Disconnect {
				continue
			}
		}
		if d := b.Drops(); d.SlowConsumers != 1 {
			t.Errorf("Drops().SlowConsumers = %d, want 1", d.SlowConsumers)
		}
	})

	t.Run("PersistentSessionTakeoverLosesNothing", func(t *testing.T) {
		// Answers flow to a persistent session while its client
		// reconnects (a takeover) again and again: every answer arrives,
		// once the client acknowledges them.
		b := startLive(t, Config{}, new(auth.AllowHook))
		dev := dialPersistent(t, b, "pdev")
		dev.subscribe(1, packets.Subscription{Filter: "pdev/rpc", Qos: 1})
		const n = 2000
		go func() {
			for i := range n {
				_ = b.Publish(response("pdev/rpc", i))
			}
		}()
		seen := map[string]bool{}
		read := func(limit int, d time.Duration) {
			for range limit {
				pk, err := dev.next(d)
				if err != nil {
					return
				}
				if pk.FixedHeader.Type == packets.Publish {
					seen[string(pk.Payload)] = true
					dev.ack(pk)
				}
			}
		}
		for range 10 {
			read(100, 200*time.Millisecond)
			dev = dialPersistent(t, b, "pdev") // takes the session over
		}
		for len(seen) < n {
			pk, err := dev.next(waitFor)
			if err != nil {
				t.Fatalf("%d of %d answers: %v", len(seen), n, err)
			}
			seen[string(pk.Payload)] = true
			dev.ack(pk)
		}
		for i := range n {
			if !seen[fmt.Sprintf(`{"id":%d}`, i)] {
				t.Fatalf("answer %d never arrived", i)
			}
		}
	})

	t.Run("FailedConnackHoldsOnlyItsOwnClient", func(t *testing.T) {
		// A persistent session's client reconnects with Maximum Packet
		// Size 2: mochi cannot send the CONNACK and gives up before
		// OnSessionEstablished. Another client's answers go on at once;
		// this client's wait in its session and arrive when it is back.
		b := startLive(t, Config{}, new(auth.AllowHook))
		other := dialClient(t, b, "other", 4, packets.Properties{})
		other.subscribe(1, packets.Subscription{Filter: "other/rpc", Qos: 1})
		p := dialClient5Session(t, b, "p5", packets.Properties{})
		p.subscribe(1, packets.Subscription{Filter: "p5/rpc", Qos: 1})
		for round := range 5 {
			bad := dialRaw(t, b, "p5", 5, true, packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true, MaximumPacketSize: 2})
			if _, err := bad.next(waitFor); err == nil {
				t.Fatal("got a packet on a connection with Maximum Packet Size 2")
			}
			if err := b.Publish(response("other/rpc", round)); err != nil {
				t.Fatal(err)
			}
			pk := other.read()
			if string(pk.Payload) != fmt.Sprintf(`{"id":%d}`, round) {
				t.Fatalf("other client got %q", pk.Payload)
			}
			other.ack(pk)
			if err := b.Publish(response("p5/rpc", round)); err != nil {
				t.Fatal(err)
			}
		}
		back := dialClient5Session(t, b, "p5", packets.Properties{})
		for round := range 5 {
			pk := back.read()
			if want := fmt.Sprintf(`{"id":%d}`, round); string(pk.Payload) != want {
				t.Fatalf("after reconnecting: %q, want %s", pk.Payload, want)
			}
			back.ack(pk)
		}
	})
}

// waitIdle waits until the broker has no outbox left: everything sent and
// acknowledged, and no goroutine of an outbox running.
func waitIdle(t *testing.T, b *Broker) {
	t.Helper()
	if !waitZero(&b.live, waitFor) || !waitZero(&b.sending, waitFor) {
		t.Fatalf("%d outboxes and %d outbox goroutines left, want none", b.live.n.Load(), b.sending.n.Load())
	}
}

// dialRaw connects a raw client and sends CONNECT (MQTT 5 properties
// props; persistent: clean start or session false); it does not wait for
// the CONNACK.
func dialRaw(t *testing.T, b *Broker, id string, v byte, persistent bool, props packets.Properties) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", b.MQTTAddr(), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), v: v}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: v,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            !persistent,
			ClientIdentifier: id,
			Keepalive:        60,
		},
		Properties: props,
	}
	if v < 5 {
		pk.Properties = packets.Properties{}
	}
	c.send(pk.ConnectEncode)
	return c
}

// dialClient5Session connects an MQTT 5 client that keeps its session for
// a minute after it disconnects.
func dialClient5Session(t *testing.T, b *Broker, id string, props packets.Properties) *rawClient {
	t.Helper()
	props.SessionExpiryInterval, props.SessionExpiryIntervalFlag = 60, true
	c := dialRaw(t, b, id, 5, true, props)
	if got := c.read(); got.FixedHeader.Type != packets.Connack || got.ReasonCode != 0 {
		t.Fatalf("connect %s: got %v, reason %#x", id, got.FixedHeader.Type, got.ReasonCode)
	}
	return c
}

func dialPersistent(t *testing.T, b *Broker, id string) *rawClient {
	t.Helper()
	c := dialRaw(t, b, id, 4, true, packets.Properties{})
	if got := c.read(); got.FixedHeader.Type != packets.Connack || got.ReasonCode != 0 {
		t.Fatalf("connect %s: got %v, reason %#x", id, got.FixedHeader.Type, got.ReasonCode)
	}
	return c
}

// consumer is an OnPublish hook that consumes what is published on one
// topic, as the log service does on its request topics.
type consumer struct {
	auth.AllowHook
	topic string
}

func (h *consumer) ID() string { return "test-consumer" }
func (h *consumer) Provides(b byte) bool {
	return b == mqtt.OnPublish || h.AllowHook.Provides(b)
}
func (h *consumer) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == h.topic {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// TestPublishAsksOnPublishHooks: what an OnPublish hook consumes is
// delivered to nobody, as on mochi's path.
func TestPublishAsksOnPublishHooks(t *testing.T) {
	b := startLive(t, Config{}, &consumer{topic: "svc/rpc"})
	watch := dialClient(t, b, "watch", 4, packets.Properties{})
	watch.subscribe(1, packets.Subscription{Filter: "svc/#", Qos: 1})
	for _, qos := range []byte{0, 1} {
		pk := live("svc/rpc", "consumed")
		pk.FixedHeader.Qos = qos
		if err := b.Publish(pk); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish(live("svc/log", "delivered")); err != nil {
		t.Fatal(err)
	}
	if pk := watch.read(); string(pk.Payload) != "delivered" {
		t.Errorf("got %q on %q, want only the message the hook let through", pk.Payload, pk.TopicName)
	}
}

// TestCloseDrains: Close waits for the acknowledgement of what was
// published before it, and stops waiting for a client that goes.
func TestCloseDrains(t *testing.T) {
	for _, leave := range []bool{false, true} {
		t.Run(map[bool]string{false: "Acknowledged", true: "ClientLeaves"}[leave], func(t *testing.T) {
			b := New(Config{MQTTAddr: "127.0.0.1:0", DrainTimeout: time.Minute})
			if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			dev := dialClient(t, b, "dev", 4, packets.Properties{})
			dev.subscribe(1, packets.Subscription{Filter: "dev/rpc", Qos: 1})
			if err := b.Publish(response("dev/rpc", 1)); err != nil {
				t.Fatal(err)
			}
			pk := dev.read()
			closed := make(chan error, 1)
			go func() { closed <- b.Close() }()
			select {
			case err := <-closed:
				t.Fatalf("Close returned (%v) before the answer was acknowledged", err)
			case <-time.After(300 * time.Millisecond):
			}
			if leave {
				dev.conn.Close()
			} else {
				dev.ack(pk)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitFor):
				t.Fatal("Close still waiting after the acknowledgement (or the client left)")
			}
		})
	}
}
