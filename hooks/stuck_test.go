package hooks_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbroker/logbroker/broker"
	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/rpc"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines that contain every one of subs.
func (b *logBuf) lines(subs ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// rawClient is a hand-rolled MQTT 3.1.1 client on a bare TCP connection,
// for what paho will not do: stop reading its socket, or read and never
// acknowledge.
type rawClient struct {
	id   string
	conn net.Conn
	pid  uint16
}

// dialRaw connects and sends CONNECT (clean session, keepalive 0, so mochi
// sets no deadline on the connection).
func dialRaw(t testing.TB, n *node, id string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.broker.MQTTAddr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := &rawClient{id: id, conn: conn}
	vh := appendString(nil, "MQTT")
	vh = append(vh, 4, 0x02, 0, 0) // level 4, clean session, keepalive 0
	if err := rc.write(0x10, appendString(vh, id)); err != nil {
		t.Fatal(err)
	}
	return rc
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// write sends one packet: header byte, remaining length, body.
func (rc *rawClient) write(header byte, body []byte) error {
	pk := []byte{header}
	for n := len(body); ; {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	if err := rc.conn.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	_, err := rc.conn.Write(append(pk, body...))
	return err
}

// subscribe sends SUBSCRIBE for filters at QoS 1 (the SUBACK is not read).
func (rc *rawClient) subscribe(t testing.TB, filters ...string) {
	t.Helper()
	rc.pid++
	body := binary.BigEndian.AppendUint16(nil, rc.pid)
	for _, f := range filters {
		body = append(appendString(body, f), 1)
	}
	if err := rc.write(0x82, body); err != nil {
		t.Fatal(err)
	}
}

// publish0 publishes payload on topic at QoS 0.
func (rc *rawClient) publish0(topic string, payload []byte) error {
	return rc.write(0x30, append(appendString(nil, topic), payload...))
}

// readPublishes reads packets until the connection fails and counts the
// PUBLISH packets among them. With ack it acknowledges those at QoS 1
// (PUBACK), else it never answers any.
func (rc *rawClient) readPublishes(count *atomic.Int64, ack bool) {
	r := bufio.NewReader(rc.conn)
	var body []byte
	for {
		h, err := r.ReadByte()
		if err != nil {
			return
		}
		n, mult := 0, 1
		for {
			d, err := r.ReadByte()
			if err != nil {
				return
			}
			n += int(d&0x7f) * mult
			mult *= 128
			if d&0x80 == 0 {
				break
			}
		}
		body = slices.Grow(body[:0], n)[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if h>>4 != 3 {
			continue
		}
		count.Add(1)
		if ack && h&0x06 == 0x02 && n >= 2 {
			tl := int(binary.BigEndian.Uint16(body))
			if n >= 2+tl+2 && rc.write(0x40, body[2+tl:4+tl]) != nil {
				return
			}
		}
	}
}

// bystander is a well-behaved client that makes Log.Log calls one after
// the other while another client misbehaves.
type bystander struct {
	c    *pclient
	src  string
	ids  []string
	lats []time.Duration
}

func newBystander(t *testing.T, n *node, src string) *bystander {
	t.Helper()
	b := &bystander{c: dialOpts(t, n, src, true), src: src}
	b.c.subscribe(src + "/rpc")
	return b
}

// run makes k calls in turn; each must be answered (within wait) with an id.
func (b *bystander) run(t *testing.T, k int) {
	t.Helper()
	for range k {
		i := len(b.ids) + 1
		began := time.Now()
		b.c.publish(fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, i, b.src, i))
		r := b.c.waitReply(b.src+"/rpc", fmt.Sprint(i))
		b.lats = append(b.lats, time.Since(began))
		if r.Error != nil || !bytes.Contains(r.Result, []byte(`"id":"`)) {
			t.Fatalf("%s: Log.Log %d: %+v", b.src, i, r)
		}
		b.ids = append(b.ids, string(r.Result))
	}
}

// check fails unless every acknowledged call of b is stored, once.
func (b *bystander) check(t *testing.T) {
	t.Helper()
	stored := b.c.listMsgs(t, b.src, `"check"`)
	for i := 1; i <= len(b.ids); i++ {
		if stored[fmt.Sprint(i)] != 1 {
			t.Errorf("%s: acknowledged call %d stored %d times, want once", b.src, i, stored[fmt.Sprint(i)])
		}
	}
}

// latencies summarizes the latencies of calls from..to-1 (logged, never
// asserted).
func (b *bystander) latencies(from, to int) string {
	l := slices.Clone(b.lats[from:min(to, len(b.lats))])
	if len(l) == 0 {
		return "no calls"
	}
	slices.Sort(l)
	return fmt.Sprintf("%d calls: median %v, p90 %v, max %v", len(l), l[len(l)/2].Round(time.Microsecond),
		l[len(l)*9/10].Round(time.Microsecond), l[len(l)-1].Round(time.Microsecond))
}

// TestStuckClients runs one misbehaving client at a time beside a
// well-behaved one: the well-behaved one's calls are all answered and
// stored, and what the broker drops for the misbehaving one is counted
// (broker.Drops) and logged when it goes.
func TestStuckClients(t *testing.T) {
	t.Run("DashboardStopsReading", func(t *testing.T) {
		// A dashboard subscribed to +/log/# and to its replies, with a
		// follow waiting, that stops reading its socket while a device
		// logs 32 KiB entries.
		logs := &logBuf{}
		n := startNodeWith(t, broker.Config{MaxPending: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))}, rpc.Config{})
		by := newBystander(t, n, "by")
		by.run(t, 20)
		dash := dialRaw(t, n, "dash")
		dash.subscribe(t, "+/log/#", "dash/rpc")
		if err := dash.publish0("logbroker/rpc", []byte(`{"id":"f","src":"dash","method":"Log.List","args":{"src":"dev","stream":"watch","follow":true,"last":0},"timeout":60}`)); err != nil {
			t.Fatal(err)
		}
		await.Until(t, wait, "the dashboard's follow waiting", func() bool { return n.svc.Stats().Waiting == 1 })

		dev := dialOpts(t, n, "dev", true)
		dev.subscribe("dev/rpc")
		pad := strings.Repeat("p", 32<<10)
		const floods = 300 // 9.6 MB: past the socket buffers and MaxPending
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 1; i <= floods; i++ {
				tok := dev.pc.Publish("logbroker/rpc", 1, false, fmt.Sprintf(`{"id":%d,"src":"dev","method":"Log.Log","args":{"msg":{"n":%d,"pad":%q}}}`, i, i, pad))
				if !tok.WaitTimeout(wait) || tok.Error() != nil {
					return
				}
			}
		}()
		by.run(t, 30) // while the device floods the dashboard
		<-done
		dev.waitReply("dev/rpc", fmt.Sprint(floods))
		await.Until(t, wait, "the dashboard disconnected as a slow consumer", func() bool { return n.broker.Drops().SlowConsumers == 1 })
		// Its follow went with it: nothing is waiting, and waking it
		// publishes to nobody.
		await.Until(t, wait, "no follow waiting", func() bool { return n.svc.Stats().Waiting == 0 })
		by.run(t, 20)
		by.check(t)
		// Cut off at its outbox's bound or at its socket's, whichever came
		// first: each path logs the client once, as it goes (the log line
		// may follow the counter by a moment).
		dashLines := func() []string {
			return append(logs.lines("slow consumer: messages dropped", "client=dash"),
				logs.lines("messages to a slow client dropped", "client=dash", "slow_consumer=true")...)
		}
		await.Until(t, wait, "the dashboard's drops logged", func() bool { return len(dashLines()) > 0 })
		if l := dashLines(); len(l) != 1 {
			t.Errorf("want one log line about the dashboard's drops, got %q", l)
		}
		t.Logf("bystander before: %s; during the flood: %s; after: %s", by.latencies(0, 20), by.latencies(20, 50), by.latencies(50, 70))
		t.Logf("drops: %+v; log: %q", n.broker.Drops(), logs.lines("slow client"))
	})

	t.Run("NeverAcknowledges", func(t *testing.T) {
		// A client that reads everything but never sends PUBACK for the
		// QoS 1 responses to its own 9000 calls.
		logs := &logBuf{}
		n := startNodeWith(t, broker.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, rpc.Config{})
		by := newBystander(t, n, "by")
		by.run(t, 20)
		nack := dialRaw(t, n, "nack")
		nack.subscribe(t, "nack/rpc")
		var got atomic.Int64
		go nack.readPublishes(&got, false)
		const calls = 9000
		sent := make(chan error, 1)
		go func() {
			for i := 1; i <= calls; i++ {
				if err := nack.publish0("logbroker/rpc", fmt.Appendf(nil, `{"id":%d,"src":"nack","method":"RPC.Ping"}`, i)); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		by.run(t, 30)
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		// A 3.1.1 client has no Receive Maximum: it gets the broker's
		// window of unacknowledged messages (64); the rest wait in its
		// outbox, none dropped, until it acknowledges or goes.
		const limit = 64
		await.Until(t, wait, "the unacknowledged limit reached", func() bool { return got.Load() == limit })
		by.run(t, 20)
		by.check(t)
		d := n.broker.Drops()
		if d.Inflight != 0 || got.Load() != limit {
			t.Errorf("%d of %d responses delivered, %d counted dropped: want %d delivered, none dropped", got.Load(), calls, d.Inflight, limit)
		}
		if l := logs.lines("level=WARN", "client store quota reached"); len(l) != 0 {
			t.Errorf("%d warnings for single dropped messages, want none (the client is reported once)", len(l))
		}
		nack.conn.Close()
		await.Until(t, wait, "the client's session and outbox gone", func() bool { return n.broker.Clients() == 1 })
		t.Logf("bystander before: %s; beside it: %s; after: %s", by.latencies(0, 20), by.latencies(20, 50), by.latencies(50, 70))
		t.Logf("delivered %d unacknowledged responses, dropped %d (%+v); log: %q",
			got.Load(), d.Inflight, d, logs.lines("slow client"))
	})

	t.Run("Flooder", func(t *testing.T) {
		// A client that publishes 5000 Log.Log calls as fast as TCP
		// lets it (QoS 0: no flow control) and reads and acknowledges its
		// responses. They come in bursts (a group commit answers many
		// calls at once), more than its queue (ClientQueue) holds: the
		// broker waits for room rather than drop one (Broker.Publish).
		logs := &logBuf{}
		n := startNodeWith(t, broker.Config{Logger: slog.New(slog.NewTextHandler(logs, nil)), ClientQueue: 64}, rpc.Config{})
		by := newBystander(t, n, "by")
		by.run(t, 20)
		fl := dialRaw(t, n, "flood")
		fl.subscribe(t, "flood/rpc")
		var got atomic.Int64
		go fl.readPublishes(&got, true)
		const calls = 5000
		sent := make(chan error, 1)
		go func() {
			for i := 1; i <= calls; i++ {
				if err := fl.publish0("logbroker/rpc", fmt.Appendf(nil, `{"id":%d,"src":"flood","method":"Log.Log","args":{"msg":%d}}`, i, i)); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		by.run(t, 50)
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		duringFlood := got.Load()
		await.Until(t, wait, "every flood call answered", func() bool { return got.Load() == calls })
		if d := n.broker.Drops(); d.Messages != 0 {
			t.Errorf("%d responses dropped, want none", d.Messages)
		}
		fl.conn.Close()
		by.run(t, 20)
		by.check(t)
		t.Logf("bystander before: %s; during the flood (%d of %d flood calls answered by its end): %s; after: %s",
			by.latencies(0, 20), duringFlood, calls, by.latencies(20, 70), by.latencies(70, 90))
		t.Logf("flooder: %d responses delivered, %+v; log: %q", got.Load(), n.broker.Drops(), logs.lines("slow client"))
	})
}
