package broker

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/integration/await"
)

// The tests named TestMochiQuirk_* reproduce, against the pinned mochi,
// the bugs mochi.go avoids. Each passes while the bug is there: when an
// upgrade makes one fail, mochi fixed it and its avoidance can go.

// stalls runs op in a loop beside writer, which runs in a loop too, and
// reports whether op stopped making progress for half a second (a
// deadlock; both goroutines then stay blocked for good) before it ran n
// times.
func stalls(n int, op, writer func()) bool {
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				writer()
			}
		}
	}()
	var done atomic.Int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range n {
			op()
			done.Add(1)
		}
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := int64(-1)
	for {
		select {
		case <-finished:
			close(stop)
			return false
		case <-tick.C:
			now := done.Load()
			if now == last {
				return true
			}
			last = now
		}
	}
}

// NextImmediate read-locks the in-flight map, then GetAll read-locks it
// again: a writer arriving in between blocks the second read lock, and
// waits itself for the first. Avoided by noSendQuota.
func TestMochiQuirk_NextImmediateDeadlocks(t *testing.T) {
	in := mqtt.NewInflights()
	in.Set(packets.Packet{PacketID: 1, Expiry: -1})
	if !stalls(5_000_000, func() { in.NextImmediate() }, func() { in.Set(packets.Packet{PacketID: 2}) }) {
		t.Fatal("NextImmediate never deadlocked beside a writer: fixed? noSendQuota may go")
	}
}

// Clients.GetByListener read-locks the client map, then Len read-locks it
// again. Avoided by safeClose.
func TestMochiQuirk_GetByListenerDeadlocks(t *testing.T) {
	cls := mqtt.NewClients()
	cl := &mqtt.Client{ID: "a"}
	cl.Net.Listener = "l"
	if !stalls(5_000_000, func() { cls.GetByListener("l") }, func() { cls.Add(cl); cls.Delete("a") }) {
		t.Fatal("GetByListener never deadlocked beside a writer: fixed? safeClose may go")
	}
}

// A session's messages in flight are resent sorted by the low 16 bits of
// their Created time in seconds: those of one second in any order.
// Avoided by reserve, whose Created keeps them in order.
func TestMochiQuirk_ResendOrderBySecond(t *testing.T) {
	now := time.Now().Unix()
	inOrder := func(created func(i int) int64) bool {
		in := mqtt.NewInflights()
		for i := 1; i <= 64; i++ {
			in.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, PacketID: uint16(i), Created: created(i)})
		}
		for i, pk := range in.GetAll(false) {
			if pk.PacketID != uint16(i+1) {
				return false
			}
		}
		return true
	}
	if inOrder(func(int) int64 { return now }) {
		t.Error("64 messages of one second came back in order: fixed? reserve's Created may go")
	}
	if !inOrder(func(i int) int64 { return now&^0xffff | int64(i) }) {
		t.Error("with reserve's Created the messages did not come back in order")
	}
}

// A client's QoS 2 PUBLISH with the id of a QoS 1 message in flight to it
// replaces that message's record with its PUBREC; the client's PUBACK
// for the message would then delete the PUBREC. Avoided by strayAck (the
// outbox counts the PUBACK first).
func TestMochiQuirk_InboundIDReplacesOutboundRecord(t *testing.T) {
	b := startLive(t, Config{}, new(auth.AllowHook))
	dev := dialClient(t, b, "dev", 4, packets.Properties{})
	dev.subscribe(1, packets.Subscription{Filter: "dev/rpc", Qos: 1})
	if err := b.Publish(response("dev/rpc", 1)); err != nil {
		t.Fatal(err)
	}
	ours := dev.read()
	pub := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, ProtocolVersion: 4,
		TopicName: "elsewhere", PacketID: ours.PacketID, Payload: []byte("x"),
	}
	dev.send(pub.PublishEncode)
	if pk := dev.read(); pk.FixedHeader.Type != packets.Pubrec {
		t.Fatalf("got %v, want PUBREC", pk.FixedHeader.Type)
	}
	cl, _ := b.srv.Clients.Get("dev")
	if rec, ok := cl.State.Inflight.Get(ours.PacketID); !ok || rec.FixedHeader.Type != packets.Pubrec {
		t.Fatalf("record %d: %v (found %v), want the PUBREC in place of our message: fixed? strayAck may go", ours.PacketID, rec.FixedHeader.Type, ok)
	}
	// The avoidance: our PUBACK ends the outbox's wait and leaves the
	// PUBREC for the PUBREL.
	dev.ack(ours)
	waitIdle(t, b)
	rel := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: 4, PacketID: ours.PacketID}
	dev.send(rel.PubrelEncode)
	if pk := dev.read(); pk.FixedHeader.Type != packets.Pubcomp {
		t.Fatalf("got %v, want PUBCOMP", pk.FixedHeader.Type)
	}
}

// blockUnsubscribed is a hook that holds the first OnUnsubscribed of
// client id "c" (its own goroutine's, as its clean session ends) until
// another client with that id is in the client map.
type blockUnsubscribed struct {
	mqtt.HookBase
	srv     *mqtt.Server
	blocked chan struct{}
	once    atomic.Bool
}

func (h *blockUnsubscribed) ID() string           { return "test-block-unsubscribed" }
func (h *blockUnsubscribed) Provides(b byte) bool { return b == mqtt.OnUnsubscribed }
func (h *blockUnsubscribed) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID != "c" || !h.once.CompareAndSwap(false, true) {
		return
	}
	close(h.blocked)
	await.Within(waitFor, func() bool {
		cur, ok := h.srv.Clients.Get("c")
		return ok && cur != cl
	})
}

// A clean session's ending connection removes its client id from the
// client map unless marked taken over, and a takeover marks it only after
// it began: the ending goroutine can remove the new client instead.
// Forced here with a hook between mochi's check and its removal. Avoided
// by endOld (the new connection waits until mochi is done with the old).
func TestMochiQuirk_CleanTakeoverRemovesNewClient(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h := &blockUnsubscribed{srv: srv, blocked: make(chan struct{})}
	addr, err := net.ResolveTCPAddr("tcp", serveMochi(t, srv, h))
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{mqttAddr: addr}
	old := dialClient(t, b, "c", 4, packets.Properties{})
	old.subscribe(1, packets.Subscription{Filter: "x"})
	old.conn.Close()
	<-h.blocked
	dialClient(t, b, "c", 4, packets.Properties{}) // CONNACK: registered
	await.Until(t, waitFor, "the new client removed from the client map (if not: fixed? endOld may go)", func() bool {
		_, ok := srv.Clients.Get("c")
		return !ok
	})
}

// An expired session leaves the client map but keeps its subscriptions in
// the topic index for good. Avoided by freeExpired.
func TestMochiQuirk_ExpiredSessionKeepsSubscriptions(t *testing.T) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = 1
	srv, addr := startMochi(t, &mqtt.Options{Capabilities: caps})
	persistV3(t, addr, "gone", "m/1")
	awaitExpired(t, srv, "gone")
	if _, ok := srv.Topics.Subscribers("m/1").Subscriptions["gone"]; !ok {
		t.Fatal("mochi freed an expired session's subscription: fixed? freeExpired may go")
	}
}

// refuseWith is a hook that refuses every CONNECT in OnConnect, sending a
// CONNACK with code as a hook must (mochi sends none after OnConnect
// fails).
type refuseWith struct {
	mqtt.HookBase
	srv  *mqtt.Server
	code packets.Code
}

func (h *refuseWith) ID() string           { return "test-refuse-with" }
func (h *refuseWith) Provides(b byte) bool { return b == mqtt.OnConnect }
func (h *refuseWith) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	_ = h.srv.SendConnack(cl, h.code, false, nil)
	return errors.New("refused")
}

// SendConnack maps an MQTT 5 reason code to a 3.1.1 return code only
// where packets.V5CodesToV3 has it: a 3.1.1 client refused with 0x97 Quota
// exceeded gets 0x97, which 3.1.1 does not define (return codes 0 to 5).
// Avoided by refuse.
func TestMochiQuirk_ConnackV5CodeToV3Client(t *testing.T) {
	srv, addr := startMochi(t, nil)
	if err := srv.AddHook(&refuseWith{srv: srv, code: packets.ErrQuotaExceeded}, nil); err != nil {
		t.Fatal(err)
	}
	if ack := dialWire(t, addr).connack(connectV3("v3", 60, true)); !bytes.Equal(ack, []byte{0x20, 2, 0, 0x97}) {
		t.Fatalf("CONNACK % x, want return code 0x97 as is: fixed? refuse need not map it", ack)
	}
}
