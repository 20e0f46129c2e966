package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Issue 12: what arrives is trusted. In secured mode nobody but the broker
// (and admins) speaks as the service on an RPC topic, a will cannot leave a
// retained forgery, and a resent Log.Log is stored once.

// forgedAck is the broker's acknowledgement of an entry that was never
// stored, as devA would forge it on devB/rpc.
const forgedAck = `{"id":1,"src":"logbroker","dst":"dev2","result":{"id":"ffffffffffffffff"}}`

// TestTrust_Will: a non-admin's will is refused at CONNECT when it is
// retained or, on an RPC topic, a frame with a foreign src; no retained
// message is left on dev2/rpc. A will there with the device's own src and
// no retain flag is accepted.
func TestTrust_Will(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "")
	url := "tcp://" + s.MQTT
	for _, c := range []struct {
		name, user, topic, payload string
		noRetain, ok               bool
	}{
		{"RetainedForgery", "dev1", "dev2/rpc", forgedAck, false, false},
		{"RetainedOwnSrc", "dev1", "dev2/rpc", `{"id":1,"src":"dev1","method":"Sys.Ping"}`, false, false},
		{"ForeignSrc", "dev1", "dev2/rpc", forgedAck, true, false},
		{"ForeignDeviceSrc", "dev1", "dev2/rpc", `{"src":"dev2","result":1}`, true, false},
		{"NotAFrame", "dev1", "dev2/rpc", `hello`, true, false},
		{"ReaderForgery", "dash", "dev2/rpc", forgedAck, true, false},
		{"ServiceForeignSrc", "dev1", "logbroker/rpc", `{"id":1,"src":"dev2","method":"Log.Delete"}`, true, false},
		{"OwnSrc", "dev1", "dev2/rpc", `{"id":1,"src":"dev1","method":"Sys.Ping"}`, true, true},
		{"AdminRetains", "ops", "fleet/status/ops", `offline`, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := tryDial(t, url, dialOpts{user: c.user, password: password(c.user), willTopic: c.topic,
				willPayload: c.payload, willNoRetain: c.noRetain})
			switch {
			case c.ok && err != nil:
				t.Errorf("will on %s: %v, want accepted", c.topic, err)
			case !c.ok && !errors.Is(err, packets.ErrorRefusedNotAuthorised):
				t.Errorf("will on %s: %v, want not authorised", c.topic, err)
			}
			if cl != nil {
				cl.pc.Disconnect(0)
			}
		})
	}
	// MQTT 5: CONNACK 0x87, from mosquitto_pub with a retained will.
	out, code := runCmd(t, nil, "mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", portOf(t, s.MQTT),
		"-u", "dev1", "-P", password("dev1"), "--will-topic", "dev2/rpc", "--will-payload", forgedAck, "--will-retain",
		"-t", "logbroker/rpc", "-m", `{"src":"dev1","method":"RPC.Ping"}`)
	if code == 0 || !strings.Contains(strings.ToLower(out), "not authori") {
		t.Errorf("MQTT 5 CONNECT with a retained will: exit %d, %q; want refused, not authorized", code, out)
	}

	fresh := dialAs(t, url, "dev2") // subscribes to dev2/rpc: a retained message would come now
	to := fresh.pingBarrier()
	for _, m := range fresh.messages(0)[:to] {
		if m.Retained || strings.Contains(string(m.Payload), "ffffffffffffffff") {
			t.Errorf("dev2 received %s on %s (retained %v)", m.Payload, m.Topic, m.Retained)
		}
	}
	if got := s.scrape(t).value("logbroker_auth_wills_refused_total"); got < 8 {
		t.Errorf("logbroker_auth_wills_refused_total = %v, want at least 8", got)
	}
	if !strings.Contains(s.logs(), "will has the retain flag") {
		t.Error("the refusal of a retained will does not say why")
	}
}

// TestTrust_ForgedFrames: dev1's frame with src "logbroker" never reaches a
// subscriber of dev2/rpc, at QoS 0, 1 and 2, over MQTT 3.1.1 and 5, while
// its frames with its own src do. The refusal is the ACL's: dropped at
// QoS 0, PUBACK/PUBREC 0x87 for MQTT 5, the connection closed for 3.1.1.
func TestTrust_ForgedFrames(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "")
	url := "tcp://" + s.MQTT
	dev2 := dialAs(t, url, "dev2")
	dev2.subscribe("dev2/rpc/#", 2)
	from := dev2.mark()

	dev1 := dialAs(t, url, "dev1")
	// QoS 0: dropped, the connection stays.
	dev1.publish("dev2/rpc", 0, false, []byte(forgedAck))
	for _, p := range []string{
		`{"id":1,"src":"dev1","SRC":"logbroker","result":{"id":"ffffffffffffffff"}}`,
		`{"id":1,"src":"dev1","src":"logbroker","result":{"id":"ffffffffffffffff"}}`,
		`{"id":1,"src":"dev1/x"}{"src":"logbroker","result":{"id":"ffffffffffffffff"}}`,
		`{"id":1,"src":"dev10","result":{"id":"ffffffffffffffff"}}`,
	} {
		dev1.publish("dev2/rpc", 0, false, []byte(p))
	}
	dev1.publish("dev2/rpc/Log.Log", 0, false, []byte(forgedAck))
	dev1.pingBarrier()
	// QoS 1 and 2 over 3.1.1: the connection is closed, as for any
	// forbidden publish.
	for _, qos := range []byte{1, 2} {
		c := dialAs(t, url, "dev1")
		tok := c.pc.Publish("dev2/rpc", qos, false, forgedAck)
		if tok.WaitTimeout(callTimeout) && tok.Error() == nil {
			t.Errorf("a forged QoS %d publish was acknowledged", qos)
		}
		c.waitDropped(callTimeout)
	}
	// MQTT 5: a negative acknowledgement.
	for _, c := range []struct {
		qos, ack byte
	}{{1, 0x40}, {2, 0x50}} {
		typ, code := rawPublish5(t, s.MQTT, "dev1", password("dev1"), "dev2/rpc", []byte(forgedAck), c.qos)
		if typ != c.ack || code != 0x87 {
			t.Errorf("MQTT 5 forged publish at QoS %d: answered with packet %#x code %#x, want %#x code 0x87", c.qos, typ, code, c.ack)
		}
		typ, code = rawPublish5(t, s.MQTT, "dev1", password("dev1"), "dev2/rpc", []byte(`{"id":3,"src":"dev1","method":"Sys.Ping"}`), c.qos)
		if typ != c.ack || code >= 0x80 {
			t.Errorf("MQTT 5 own-src publish at QoS %d: answered with packet %#x code %#x, want %#x success", c.qos, typ, code, c.ack)
		}
	}
	// A reader may call devices too, as itself only.
	dash := dialAs(t, url, "dash")
	dash.publish("dev2/rpc", 0, false, []byte(forgedAck))
	dash.pingBarrier()

	// Frames with the publisher's own src are delivered, at every QoS.
	for qos := byte(0); qos <= 2; qos++ {
		ping := fmt.Sprintf(`{"id":1,"src":"dev1","method":"Sys.Ping","qos":%d}`, qos)
		dev1.publish("dev2/rpc", qos, false, []byte(ping))
		dev2.waitMsg(from, callTimeout, "dev1's ping at QoS "+fmt.Sprint(qos), func(m message) bool {
			return m.Topic == "dev2/rpc" && string(m.Payload) == ping
		})
	}
	// The service's own topics keep their answer: a foreign src there is
	// refused by the service with 403 on the caller's own <identity>/rpc.
	r := dev1.callOn(map[string]any{"src": "dev2", "method": "Log.List", "args": map[string]any{}}, "dev1/rpc")
	r.fails(t, 403)

	to := dev2.pingBarrier()
	for _, m := range dev2.messages(from)[:to-from] {
		if strings.Contains(string(m.Payload), "ffffffffffffffff") {
			t.Errorf("dev2 received a forged frame on %s: %s", m.Topic, m.Payload)
		}
	}
	if got := s.scrape(t).value("logbroker_auth_forged_frames_total"); got < 10 {
		t.Errorf("logbroker_auth_forged_frames_total = %v, want at least 10", got)
	}
}

// rawPublish5 connects as user over MQTT 5, publishes payload to topic at
// qos (1 or 2) and returns the packet type byte (0x40 PUBACK, 0x50 PUBREC)
// and reason code the broker answered with.
func rawPublish5(t testing.TB, addr, user, pass, topic string, payload []byte, qos byte) (typ, code byte) {
	t.Helper()
	return dialRaw5(t, addr, user, pass).publish(topic, 0, payload, qos)
}

// raw5 is a hand-made MQTT 5 connection, for what paho (3.1.1) and the
// mosquitto tools cannot show: reason codes, topic aliases.
type raw5 struct {
	t      testing.TB
	conn   net.Conn
	r      *bufio.Reader
	nextID uint16
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func dialRaw5(t testing.TB, addr, user, pass string) *raw5 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(4 * callTimeout))
	c := &raw5{t: t, conn: conn, r: bufio.NewReader(conn)}
	var connect bytes.Buffer
	connect.Write(mqttString("MQTT"))
	connect.Write([]byte{5, 0xc2, 0, 30, 0}) // v5, user+password+clean, keep alive, no properties
	connect.Write(mqttString(fmt.Sprintf("raw5-%d", clientSeq.Add(1))))
	connect.Write(mqttString(user))
	connect.Write(mqttString(pass))
	c.write(0x10, connect.Bytes())
	if head, body := c.read(); head != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK %#x %x", head, body)
	}
	return c
}

func (c *raw5) write(head byte, body []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(mqttPacket(head, body)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// mqttPacket is an MQTT packet: its first byte head, the remaining length,
// then body.
func mqttPacket(head byte, body []byte) []byte {
	out := []byte{head}
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func (c *raw5) read() (byte, []byte) {
	c.t.Helper()
	head, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	n, shift := 0, 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return head, body
}

// publish sends a QoS 1 or 2 PUBLISH (with a Topic Alias property unless
// alias is 0) and returns the type and reason code of its acknowledgement.
func (c *raw5) publish(topic string, alias uint16, payload []byte, qos byte) (typ, code byte) {
	c.t.Helper()
	c.nextID++
	var p bytes.Buffer
	p.Write(mqttString(topic))
	p.Write([]byte{byte(c.nextID >> 8), byte(c.nextID)})
	if alias != 0 {
		p.Write([]byte{3, 0x23, byte(alias >> 8), byte(alias)})
	} else {
		p.WriteByte(0)
	}
	p.Write(payload)
	c.write(0x30|qos<<1, p.Bytes())
	head, body := c.read()
	if len(body) < 2 || body[0] != byte(c.nextID>>8) || body[1] != byte(c.nextID) {
		c.t.Fatalf("answer %#x %x: not for packet id %d", head, body, c.nextID)
	}
	if qos == 2 && head == 0x50 && (len(body) == 2 || body[2] < 0x80) {
		c.write(0x62, body[:2]) // PUBREL
		if h, b := c.read(); h != 0x70 {
			c.t.Fatalf("PUBREL answered with %#x %x, want PUBCOMP", h, b)
		}
	}
	if len(body) == 2 {
		return head, 0
	}
	return head, body[2]
}

// TestTrust_TopicAlias: no topic alias can carry a forged frame: the
// broker advertises no Topic Alias Maximum, so a PUBLISH that sets or uses
// an alias is a protocol error (DISCONNECT 0x94, broker/alias.go), whatever
// its topic and payload, and nothing of it is delivered.
func TestTrust_TopicAlias(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "")
	dev2 := dialAs(t, "tcp://"+s.MQTT, "dev2")
	from := dev2.mark()
	for _, topic := range []string{"dev2/rpc", ""} {
		c := dialRaw5(t, s.MQTT, "dev1", password("dev1"))
		var p bytes.Buffer
		p.Write(mqttString(topic))
		p.Write([]byte{0, 1})          // packet id
		p.Write([]byte{3, 0x23, 0, 1}) // properties: Topic Alias 1
		p.Write([]byte(forgedAck))
		c.write(0x30|1<<1, p.Bytes())
		if head, body := c.read(); head != 0xe0 || len(body) < 1 || body[0] != 0x94 {
			t.Errorf("publish with topic %q and an alias: answered %#x %x, want DISCONNECT 0x94", topic, head, body)
		}
	}
	to := dev2.pingBarrier()
	for _, m := range dev2.messages(from)[:to-from] {
		if strings.Contains(string(m.Payload), "ffffffffffffffff") {
			t.Errorf("dev2 received a forged frame through a topic alias: %s", m.Payload)
		}
	}
}

// TestTrust_ExactlyOnceLog: the same Log.Log frame sent again (on the same
// connection, from a new connection, after kill -9 and a restart) is
// answered with the same id and stored once; the same id with other bytes
// is a new call, and notifications are not de-duplicated.
func TestTrust_ExactlyOnceLog(t *testing.T) {
	t.Parallel()
	s := start(t, "--ws", "")
	frame := `{"id":77,"src":"once","method":"Log.Log","args":{"msg":"boot ok","timestamp":1764080000123}}`
	c1 := s.dial(t)
	first := c1.call(frame, "")
	id := first.logID(t)
	if again := c1.call(frame, ""); again.Raw != first.Raw {
		t.Errorf("resent on the same connection: %s, want %s", again.Raw, first.Raw)
	}
	c2 := s.dial(t)
	if again := c2.call(frame, ""); again.Raw != first.Raw {
		t.Errorf("resent from a new connection: %s, want %s", again.Raw, first.Raw)
	}
	if es := c2.list(map[string]any{"src": "once"}); len(es) != 1 || es[0].ID != id {
		t.Fatalf("once holds %v, want the one entry %s", es, id)
	}

	s.kill9()
	s = s.restart()
	c3 := s.dial(t)
	if again := c3.call(frame, ""); again.Raw != first.Raw {
		t.Errorf("resent after kill -9 and restart: %s, want %s", again.Raw, first.Raw)
	}
	if es := c3.list(map[string]any{"src": "once"}); len(es) != 1 || es[0].ID != id {
		t.Fatalf("after the restart once holds %v, want the one entry %s", es, id)
	}
	// Same id, other bytes: a device that rebooted and counts again.
	other := c3.call(`{"id":77,"src":"once","method":"Log.Log","args":{"msg":"boot ok again"}}`, "").logID(t)
	if other == id {
		t.Errorf("a frame with the same id and other bytes got the first's id %s", id)
	}
	for range 2 {
		c3.notify(map[string]any{"src": "once", "method": "Log.Log", "args": map[string]any{"msg": "note", "stream": "n"}}, "")
	}
	if es := c3.list(map[string]any{"src": "once", "stream": "n"}); len(es) != 2 {
		t.Errorf("two identical notifications stored %d entries, want 2", len(es))
	}
	if es := c3.list(map[string]any{"src": "once", "stream": "console"}); len(es) != 2 {
		t.Errorf("console holds %d entries, want 2", len(es))
	}
}

// TestTrust_DedupOff: --dedup-window 0 stores every resend.
func TestTrust_DedupOff(t *testing.T) {
	t.Parallel()
	s := start(t, "--ws", "", "--dedup-window", "0")
	c := s.dial(t)
	frame := `{"id":5,"src":"twice","method":"Log.Log","args":{"msg":"x"}}`
	a, b := c.call(frame, "").logID(t), c.call(frame, "").logID(t)
	if a == b {
		t.Errorf("window 0: the resend got the same id %s", a)
	}
}

// TestTrust_OfflineSessionTakeover: dev1 may not take over dev2's
// persistent session (clean=false) while dev2 is offline: it would inherit
// dev2's subscription to dev2/rpc and get the replies meant for it.
func TestTrust_OfflineSessionTakeover(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "")
	url := "tcp://" + s.MQTT
	persistent := func(user string) (*client, error) {
		return dialClient(t, url, "persist-id", user, 2*callTimeout, func(o *mqtt.ClientOptions) {
			o.SetProtocolVersion(4).SetCleanSession(false).SetUsername(user).SetPassword(password(user))
		})
	}
	victim, err := persistent("dev2")
	if err != nil {
		t.Fatal(err)
	}
	victim.subscribe("dev2/rpc", 1)
	victim.pingBarrier()
	victim.pc.Disconnect(50)

	if _, err := persistent("dev1"); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("dev1 with dev2's offline session id: %v, want refused", err)
	}
}
