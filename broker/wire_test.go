package broker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Hand-encoded MQTT packets, so that a test sees the exact bytes on the
// wire, independent of mochi's codec. (rawClient in live_test.go speaks
// through mochi's codec instead.)

// wire builds the body of a packet.
type wire struct{ bytes.Buffer }

func (w *wire) u8(b ...byte) *wire { w.Write(b); return w }
func (w *wire) u16(v int) *wire    { return w.u8(byte(v>>8), byte(v)) }
func (w *wire) str(s string) *wire { w.u16(len(s)); w.WriteString(s); return w }

// varint appends n as an MQTT variable byte integer.
func varint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// packet is a whole packet: first byte, remaining length, body.
func packet(first byte, body []byte) []byte {
	return append(varint([]byte{first}, len(body)), body...)
}

// props is an MQTT 5 property block: its length, then the properties.
func props(p []byte) []byte { return append(varint(nil, len(p)), p...) }

// userProp is one User Property (0x26).
func userProp(k, v string) []byte {
	var w wire
	w.u8(0x26).str(k).str(v)
	return w.Bytes()
}

// connectV5 is an MQTT 5 CONNECT with a clean start; p are its properties.
func connectV5(id string, keepalive int, p []byte) []byte {
	var w wire
	w.str("MQTT").u8(5, 0x02).u16(keepalive)
	w.Write(props(p))
	w.str(id)
	return packet(0x10, w.Bytes())
}

// connectV3 is an MQTT 3.1.1 CONNECT; clean sets the clean session flag.
func connectV3(id string, keepalive int, clean bool) []byte {
	var w wire
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	w.str("MQTT").u8(4, flags).u16(keepalive).str(id)
	return packet(0x10, w.Bytes())
}

// publishV5 is an MQTT 5 PUBLISH at qos (id is its packet id, unused at
// QoS 0) with properties p.
func publishV5(topic string, qos byte, id int, p []byte, payload string) []byte {
	var w wire
	w.str(topic)
	if qos > 0 {
		w.u16(id)
	}
	w.Write(props(p))
	w.WriteString(payload)
	return packet(0x30|qos<<1, w.Bytes())
}

// wireConn is a raw MQTT connection.
type wireConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialWire(t testing.TB, addr string) *wireConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wireConn{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *wireConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one whole packet, as its bytes, within d.
func (c *wireConn) next(d time.Duration) ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	first, err := c.r.ReadByte()
	if err != nil {
		return nil, err
	}
	out := []byte{first}
	n, mul := 0, 1
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	return append(out, body...), nil
}

// closed fails the test unless the server closes the connection within
// waitFor (whatever it sends first is skipped).
func (c *wireConn) closed() {
	c.t.Helper()
	for {
		_, err := c.next(waitFor)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("the connection is still open after %v", waitFor)
		}
		if err != nil {
			return
		}
	}
}

// read is next, failing the test on error.
func (c *wireConn) read() []byte {
	c.t.Helper()
	pk, err := c.next(waitFor)
	if err != nil {
		c.t.Fatal(err)
	}
	return pk
}

// connack sends connect and returns the CONNACK.
func (c *wireConn) connack(connect []byte) []byte {
	c.t.Helper()
	c.write(connect)
	pk := c.read()
	if pk[0] != 0x20 {
		c.t.Fatalf("got % x, want a CONNACK", pk)
	}
	return pk
}

// connackProps returns the properties of an MQTT 5 CONNACK, by identifier
// (each value as its bytes; User Properties are left out).
func connackProps(t testing.TB, pk []byte) map[byte][]byte {
	t.Helper()
	// type, remaining length (one byte below 128), flags, reason, then properties
	r := bufio.NewReader(bytes.NewReader(pk[4:]))
	n, mul := 0, 1
	for {
		b, _ := r.ReadByte()
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("CONNACK % x: %v", pk, err)
	}
	out := map[byte][]byte{}
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		var size int
		switch id {
		case 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			size = 1
		case 0x13, 0x21, 0x22: // two-byte integer
			size = 2
		case 0x11, 0x27: // four-byte integer
			size = 4
		case 0x12, 0x1A, 0x1C, 0x1F, 0x15, 0x16: // string or binary
			size = 2 + (int(p[0])<<8 | int(p[1]))
		case 0x26: // string pair
			k := 2 + (int(p[0])<<8 | int(p[1]))
			size = k + 2 + (int(p[k])<<8 | int(p[k+1]))
		default:
			t.Fatalf("CONNACK % x: unknown property %#x", pk, id)
		}
		out[id] = p[:size]
		p = p[size:]
	}
	return out
}

// startMochi starts a bare mochi server (default options but for opts)
// with mochi's allow-all hook, for tests that reproduce mochi's own
// behaviour; it returns the server and its address.
func startMochi(t testing.TB, opts *mqtt.Options) (*mqtt.Server, string) {
	t.Helper()
	srv := mqtt.New(opts)
	return srv, serveMochi(t, srv)
}

// serveMochi adds mochi's allow-all hook and then hooks to srv, serves it
// on a loopback port until the test ends, and returns the address.
func serveMochi(t testing.TB, srv *mqtt.Server, hooks ...mqtt.Hook) string {
	t.Helper()
	for _, h := range append([]mqtt.Hook{new(auth.AllowHook)}, hooks...) {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// startBroker starts a Broker on port 0 with mochi's allow-all hook.
func startBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	cfg.MQTTAddr = "127.0.0.1:0"
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = -1
	}
	b := New(cfg)
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
