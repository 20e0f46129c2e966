package hooks

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/rpc"
)

func TestRPCTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		"devB/rpc":                  true,
		"devB/rpc/Sys.Ping":         true,
		"devB/rpc-resp/mos-1/rpc":   true,
		"a/b/rpc":                   true,
		"rpc":                       false,
		"rpc/x":                     false,
		"devB/rpc-resp/mos-1":       false,
		"devB/log":                  false,
		"devB/rpcx":                 false,
		"devB/xrpc":                 false,
		"devB/log/rpc/x":            true,
		"/rpc":                      true,
		"devB/":                     false,
		"devB/rpc/":                 true,
		"logbroker/rpc/Log.Log/x/y": true,
	} {
		if got := rpcTopic(topic); got != want {
			t.Errorf("rpcTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}

// codeHook refuses every publish on its topic by returning a reason code
// from OnPublish, as a hook would naively do.
type codeHook struct {
	mqtt.HookBase
	topic string
}

func (h *codeHook) ID() string           { return "code" }
func (h *codeHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *codeHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == h.topic {
		return pk, packets.ErrNotAuthorized
	}
	return pk, nil
}

// TestMochiOnPublishCodeStillDelivers reproduces the mochi v2.7.9 behaviour
// that refusePublish avoids: a publish whose OnPublish hook returned an
// error code is still delivered to subscribers when it comes from a 3.1.1
// client (at QoS 0 and 1 alike). Should this test fail after a mochi
// upgrade, OnPublish may return the code itself.
func TestMochiOnPublishCodeStillDelivers(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddHook(&codeHook{topic: "x/rpc"}, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	const wait = 10 * time.Second
	var mu sync.Mutex
	got := map[byte]bool{}
	arrived := make(chan struct{}, 4)
	dial := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + ln.Address()).SetClientID(id).
			SetAutoReconnect(false).SetConnectTimeout(wait))
		if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	sub := dial("sub")
	tok := sub.Subscribe("x/rpc", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Payload()[0]] = true
		mu.Unlock()
		arrived <- struct{}{}
	})
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub := dial("pub")
	for _, qos := range []byte{0, 1} {
		if tok := pub.Publish("x/rpc", qos, false, []byte{qos}); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("publish at QoS %d: %v", qos, tok.Error())
		}
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(wait):
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("mochi no longer delivers a publish refused by an OnPublish code (delivered: %v): refusePublish's workaround may go", got)
		}
	}
}

// TestForgedFrame: the frame rule, for a device, a device named like the
// service, and the service's own request topics (left to the service).
func TestForgedFrame(t *testing.T) {
	a := &Auth{services: []string{"logbroker", "lb2"}}
	for _, c := range []struct {
		identity, topic, payload string
		forged                   bool
	}{
		{"devA", "devB/rpc", `{"id":1,"src":"devA","method":"Sys.Ping"}`, false},
		{"devA", "devB/rpc", `{"id":1,"src":"devA/x","result":1}`, false},
		{"devA", "devB/rpc", `{"id":1,"src":"logbroker","result":1}`, true},
		{"devA", "devB/rpc", `{"id":1,"src":"devB","result":1}`, true},
		{"devA", "devB/rpc", `not json`, true},
		{"devA", "devB/log", `not json`, false},                                       // not an RPC topic
		{"devA", "logbroker/rpc", `{"id":1,"src":"devB","method":"Log.List"}`, false}, // the service answers 403
		{"devA", "lb2/rpc/Log.List", `{"src":"devB"}`, false},
		{"logbroker", "devB/rpc", `{"id":1,"src":"logbroker","result":1}`, true},
		{"lb2", "devB/rpc", `{"id":1,"src":"lb2/x","result":1}`, true},
		{"devA", "devB/rpc", `{"id":1,"src":"logbroker/rpc-resp/x","result":1}`, true}, // not devA's (in this version)
	} {
		caller := rpc.Caller{Identity: c.identity, Role: rpc.RoleDevice, Secured: true}
		if got := a.forgedFrame(caller, c.topic, []byte(c.payload)) != ""; got != c.forged {
			t.Errorf("%s publishing %s to %s: forged %v, want %v", c.identity, c.payload, c.topic, got, c.forged)
		}
	}
}
