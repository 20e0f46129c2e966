package loadgen

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Attacks of issue 11: hostile clients run beside the callers (Config.Attack)
// on raw sockets, so that the callers' latency shows what one client can
// do to the others.
const (
	// AttackTinyPacket: one MQTT 5 client with Maximum Packet Size 16,
	// subscribed to its reply topic, sends Log.Log at 200/s (QoS 0); every
	// answer is larger than it accepts.
	AttackTinyPacket = "tiny-packet"
	// AttackTakeover: 8 client ids with persistent sessions (MQTT 3.1.1
	// clean=false) reconnect in a loop, each closing its socket right after
	// one Log.Log call (QoS 1), never acknowledging an answer.
	AttackTakeover = "takeover"
	// AttackNoConnack: 2 MQTT 5 clients with a session expiry reconnect in
	// a loop with Maximum Packet Size 2, so that the CONNACK cannot be sent.
	AttackNoConnack = "no-connack"
)

// Attacks lists the attacks by name.
var Attacks = []string{AttackTinyPacket, AttackTakeover, AttackNoConnack}

// AttackResult counts what an attack did.
type AttackResult struct {
	Name     string `json:"name"`
	Connects int64  `json:"connects"` // connections opened
	Calls    int64  `json:"calls"`    // requests published
	Failures int64  `json:"failures"` // dials or writes that failed
}

// attackPace is how often each attacking client reconnects (or, for
// AttackTinyPacket, calls): 50 times a second per client.
const attackPace = 20 * time.Millisecond

// startAttack runs cfg.Attack until ctx ends; stop waits for its
// goroutines.
func startAttack(ctx context.Context, cfg Config) (res *AttackResult, stop func(), err error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "mqtt") {
		return nil, nil, fmt.Errorf("--attack needs a tcp:// broker, not %q", cfg.Broker)
	}
	a := &attacker{addr: u.Host, cfg: cfg, res: &AttackResult{Name: cfg.Attack}}
	var wg sync.WaitGroup
	switch cfg.Attack {
	case AttackTinyPacket:
		wg.Go(func() { a.tinyPacket(ctx, cfg.Prefix+"-atk-tiny") })
	case AttackTakeover:
		for i := range 8 {
			wg.Go(func() { a.takeover(ctx, cfg.Prefix+"-atk-p"+strconv.Itoa(i)) })
		}
	case AttackNoConnack:
		for i := range 2 {
			wg.Go(func() { a.noConnack(ctx, cfg.Prefix+"-atk-c"+strconv.Itoa(i)) })
		}
	default:
		return nil, nil, fmt.Errorf("unknown attack %q (want one of %v)", cfg.Attack, Attacks)
	}
	return a.res, wg.Wait, nil
}

type attacker struct {
	addr string
	cfg  Config
	res  *AttackResult

	connects, calls, failures atomic.Int64
}

func (a *attacker) sum() {
	a.res.Connects, a.res.Calls, a.res.Failures = a.connects.Load(), a.calls.Load(), a.failures.Load()
}

// dial opens a connection and sends connect; it does not read.
func (a *attacker) dial(connect []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", a.addr, a.cfg.Timeout)
	if err != nil {
		a.failures.Add(1)
		return nil, err
	}
	a.connects.Add(1)
	if _, err := c.Write(connect); err != nil {
		a.failures.Add(1)
		c.Close()
		return nil, err
	}
	return c, nil
}

// logCall is the request frame of a Log.Log call n of src.
func (a *attacker) logCall(src string, n int64) []byte {
	return fmt.Appendf(nil, `{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":"attack %d"}}`, n, src, n)
}

func (a *attacker) tinyPacket(ctx context.Context, id string) {
	defer a.sum()
	c, err := a.dial(connect5(id, a.cfg.User, a.cfg.Password, true, 0, 16))
	if err != nil {
		return
	}
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, c) }()
	stopped := context.AfterFunc(ctx, func() { c.Close() })
	defer stopped()
	if _, err := c.Write(subscribe(5, id+"/rpc")); err != nil {
		a.failures.Add(1)
		return
	}
	tick := time.NewTicker(time.Second / 200)
	defer tick.Stop()
	for n := int64(1); ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := c.Write(publish(5, a.cfg.Service+"/rpc", 0, 0, a.logCall(id, n))); err != nil {
			a.failures.Add(1)
			return
		}
		a.calls.Add(1)
	}
}

func (a *attacker) takeover(ctx context.Context, id string) {
	defer a.sum()
	tick := time.NewTicker(attackPace)
	defer tick.Stop()
	for n := int64(1); ctx.Err() == nil; n++ {
		if c, err := a.dial(connect4(id, a.cfg.User, a.cfg.Password, false)); err == nil {
			_, err1 := c.Write(subscribe(4, id+"/rpc"))
			_, err2 := c.Write(publish(4, a.cfg.Service+"/rpc", 1, 1, a.logCall(id, n)))
			if err1 != nil || err2 != nil {
				a.failures.Add(1)
			} else {
				a.calls.Add(1)
			}
			c.Close()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (a *attacker) noConnack(ctx context.Context, id string) {
	defer a.sum()
	tick := time.NewTicker(attackPace)
	defer tick.Stop()
	for ctx.Err() == nil {
		if c, err := a.dial(connect5(id, a.cfg.User, a.cfg.Password, false, 300, 2)); err == nil {
			// The broker cannot answer; it closes the connection.
			_ = c.SetReadDeadline(time.Now().Add(a.cfg.Timeout))
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// packet is an MQTT packet of type byte first with body.
func packet(first byte, body []byte) []byte {
	p := []byte{first}
	for n := len(body); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connectBody is a CONNECT's variable header and payload up to the
// properties (MQTT 5) of version v.
func connectBody(v byte, id, user, password string, clean bool, props []byte) []byte {
	b := appendString(nil, "MQTT")
	flags := byte(0)
	if clean {
		flags |= 0x02
	}
	if user != "" {
		flags |= 0x80 | 0x40
	}
	b = append(b, v, flags, 0, 60) // keep-alive 60 s
	if v == 5 {
		b = append(b, byte(len(props)))
		b = append(b, props...)
	}
	b = appendString(b, id)
	if user != "" {
		b = appendString(b, user)
		b = appendString(b, password)
	}
	return b
}

// connect4 is an MQTT 3.1.1 CONNECT.
func connect4(id, user, password string, clean bool) []byte {
	return packet(0x10, connectBody(4, id, user, password, clean, nil))
}

// connect5 is an MQTT 5 CONNECT with a Session Expiry Interval (0: none)
// and a Maximum Packet Size (0: none).
func connect5(id, user, password string, clean bool, expiry, maxPacket uint32) []byte {
	var props []byte
	if expiry > 0 {
		props = binary.BigEndian.AppendUint32(append(props, 0x11), expiry)
	}
	if maxPacket > 0 {
		props = binary.BigEndian.AppendUint32(append(props, 0x27), maxPacket)
	}
	return packet(0x10, connectBody(5, id, user, password, clean, props))
}

// subscribe is a SUBSCRIBE (packet id 1) to filter at QoS 1.
func subscribe(v byte, filter string) []byte {
	b := []byte{0, 1}
	if v == 5 {
		b = append(b, 0)
	}
	b = appendString(b, filter)
	return packet(0x82, append(b, 1))
}

// publish is a PUBLISH at qos (packet id id when qos > 0).
func publish(v byte, topic string, qos byte, id uint16, payload []byte) []byte {
	b := appendString(nil, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if v == 5 {
		b = append(b, 0)
	}
	return packet(0x30|qos<<1, append(b, payload...))
}
