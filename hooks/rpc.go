package hooks

import (
	"bytes"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/rpc"
)

// Publisher publishes a packet as the broker itself. broker.Broker is one.
type Publisher interface {
	Publish(pk packets.Packet) error
}

// Sender adapts a Publisher to rpc.Publisher. It is an rpc.Interest too:
// when P can tell whether a topic has subscribers (broker.Broker can), the
// service publishes live messages only where someone listens.
type Sender struct{ P Publisher }

var (
	_ rpc.Publisher = Sender{}
	_ rpc.Interest  = Sender{}
)

// Interested asks P whether a message on topic would reach anyone; true
// when P cannot tell.
func (s Sender) Interested(topic string) bool {
	if i, ok := s.P.(rpc.Interest); ok {
		return i.Interested(topic)
	}
	return true
}

// Publish sends m as an MQTT publish, never retained.
func (s Sender) Publish(m rpc.Message) error {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS},
		TopicName:   m.Topic,
		Payload:     m.Payload,
	}
	if m.Correlation != nil {
		pk.Properties.CorrelationData = m.Correlation
	}
	return s.P.Publish(pk)
}

// RPC catches request frames for the service and hands them to it.
type RPC struct {
	mqtt.HookBase
	svc      *rpc.Service
	prefixes []prefix
	conns    sync.Map // *mqtt.Client -> *rpc.Conn
	identify func(*mqtt.Client) rpc.Caller
}

// prefix is "<name>/rpc" for one name of the service.
type prefix struct {
	name, topic string
}

// NewRPC makes the hook for svc, answering to every name svc has. identify
// tells who a client is (Auth.Caller); nil is open mode.
func NewRPC(svc *rpc.Service, identify func(*mqtt.Client) rpc.Caller) *RPC {
	h := &RPC{svc: svc, identify: identify}
	for _, n := range svc.Names() {
		h.prefixes = append(h.prefixes, prefix{name: n, topic: n + "/rpc"})
	}
	return h
}

// ID names the hook in mochi's logs.
func (h *RPC) ID() string { return "logbroker-rpc" }

// Provides reports the events the hook handles.
func (h *RPC) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnWill || b == mqtt.OnDisconnect
}

// Match reports whether topic is a request topic of the service, and which
// name and method (from a /rpc/<method> suffix) it carries.
func (h *RPC) Match(topic string) (name, method string, hasMethod, ok bool) {
	for _, p := range h.prefixes {
		if !strings.HasPrefix(topic, p.topic) {
			continue
		}
		rest := topic[len(p.topic):]
		if rest == "" {
			return p.name, "", false, true
		}
		if rest[0] == '/' {
			return p.name, rest[1:], true, true
		}
	}
	return "", "", false, false
}

// consumed is packets.CodeSuccessIgnore as an error, converted once: the
// conversion of the struct allocated on every request.
var consumed error = packets.CodeSuccessIgnore

// OnPublish consumes request frames; other publishes pass through. The
// broker's own publishes are never calls (they would loop); one on a
// request topic (the response to a frame whose src is "<service>" or
// "<service>/rpc/...") is dropped, since nobody may receive messages there.
func (h *RPC) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	name, method, hasMethod, ok := h.Match(pk.TopicName)
	if !ok {
		return pk, nil
	}
	if cl.Net.Inline {
		return pk, consumed
	}
	h.submit(cl, &pk, name, method, hasMethod)
	return pk, consumed
}

// submit queues the request pk on cl's calls. Apart from OnPublish, whose
// frame every publish through mochi stacks up (the broker's own responses
// included, on the goroutine that publishes them), so that it stays small.
func (h *RPC) submit(cl *mqtt.Client, pk *packets.Packet, name, method string, hasMethod bool) {
	h.conn(cl).Submit(rpc.Call{
		Payload:       pk.Payload,
		Service:       name,
		Method:        method,
		HasMethod:     hasMethod,
		ResponseTopic: h.responseTopic(pk),
		Correlation:   bytes.Clone(pk.Properties.CorrelationData),
	})
}

// consumedWill is what a will addressed to the service becomes once the
// service has taken it: mochi publishes a will without calling OnPublish,
// so it must still publish something, and this reaches no one. The
// wildcards '#' and '+' do not match a topic that starts with '$', and no
// client can subscribe to a filter holding NUL (mochi refuses such a
// string); it carries no payload and is not retained.
var consumedWill = mqtt.Will{TopicName: "$logbroker\x00will-consumed", Flag: 1}

// OnWill consumes a Last Will addressed to the service. mochi publishes
// wills straight to subscribers, past OnPublish, so without this a will on
// <service>/rpc would reach subscribers of that topic and could be
// retained. The will is a request like any other publish there (a device
// can log its own end): it is queued on the connection's calls, after
// those it published before. mochi calls OnWill when the connection ends,
// so a delayed will (MQTT 5 Will Delay Interval) to the service runs at
// once, not after its delay.
func (h *RPC) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	name, method, hasMethod, ok := h.Match(will.TopicName)
	if !ok {
		return will, nil
	}
	h.conn(cl).Submit(rpc.Call{
		Payload:   will.Payload,
		Service:   name,
		Method:    method,
		HasMethod: hasMethod,
	})
	return consumedWill, nil
}

// responseTopic is the MQTT 5 Response Topic, if it is one a client could
// publish to itself: a topic name (no wildcards), not under '$' (where the
// broker would be made to forge $SYS), and not a request topic of the
// service (the broker's own publishes are not consumed there, so the
// response would reach its subscribers). Otherwise the response goes to
// <src>/rpc.
func (h *RPC) responseTopic(pk *packets.Packet) string {
	t := pk.Properties.ResponseTopic
	if t == "" || t[0] == '$' || strings.ContainsAny(t, "+#\x00") {
		return ""
	}
	if _, _, _, ok := h.Match(t); ok {
		return ""
	}
	return t
}

func (h *RPC) conn(cl *mqtt.Client) *rpc.Conn {
	if c, ok := h.conns.Load(cl); ok {
		return c.(*rpc.Conn)
	}
	var caller rpc.Caller
	if h.identify != nil {
		caller = h.identify(cl)
	}
	c := h.svc.OpenAs(cl.ID, caller)
	if prev, loaded := h.conns.LoadOrStore(cl, c); loaded {
		c.Close()
		return prev.(*rpc.Conn)
	}
	return c
}

// OnDisconnect closes the connection's call queue: queued calls still run,
// its waiting follows are dropped.
func (h *RPC) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if c, ok := h.conns.LoadAndDelete(cl); ok {
		c.(*rpc.Conn).Close()
	}
}
