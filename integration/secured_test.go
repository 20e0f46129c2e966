package integration

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// secFleet is the users file of most secured tests: two devices, a reader
// (dashboard) and an admin.
var secFleet = []account{
	{"dev1", "device"}, {"dev2", "device"}, {"dash", "reader"}, {"ops", "admin"},
}

// subAck is what the SUBACK of a refused filter carries (MQTT 3.1.1).
const subRefused = 0x80

// TestSecured_Roles checks, one call at a time, what each role may and may
// not do through the log service, against one secured broker.
func TestSecured_Roles(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...))
	url := "tcp://" + s.MQTT
	dev1 := dialAs(t, url, "dev1")
	dev2 := dialAs(t, url, "dev2")
	dash := dialAs(t, url, "dash")
	ops := dialAs(t, url, "ops")

	logCall := func(args map[string]any) map[string]any { return map[string]any{"method": "Log.Log", "args": args} }
	listCall := func(args map[string]any) map[string]any { return map[string]any{"method": "Log.List", "args": args} }
	delCall := func(args map[string]any) map[string]any { return map[string]any{"method": "Log.Delete", "args": args} }

	t.Run("DeviceOwnSrc", func(t *testing.T) {
		id := dev1.log(map[string]any{"msg": "own"})
		es := dev1.list(map[string]any{})
		if len(es) != 1 || es[0].ID != id || es[0].Src != "dev1" {
			t.Fatalf("dev1 lists %+v, want its one entry %s", es, id)
		}
		dev1.call(delCall(map[string]any{}), "").ok(t)
		if es := dev1.list(map[string]any{}); len(es) != 0 {
			t.Fatalf("after Delete dev1 lists %+v", es)
		}
	})
	t.Run("DeviceSubSrcInFrame", func(t *testing.T) {
		// Frame src dev1/x: the reply goes to dev1/x/rpc, under dev1/#.
		if code := dev1.trySubscribe("dev1/x/rpc", 1); code != 1 {
			t.Fatalf("dev1 subscribing dev1/x/rpc granted %#x", code)
		}
		r := dev1.call(map[string]any{"src": "dev1/x", "method": "Log.Log", "args": map[string]any{"msg": "sub"}}, "")
		r.logID(t)
		r = dev1.call(map[string]any{"src": "dev1/x", "method": "Log.List"}, "")
		if es := r.entries(t); len(es) != 1 || es[0].Src != "dev1/x" {
			t.Fatalf("dev1/x lists %s", r.Raw)
		}
		dev1.call(map[string]any{"src": "dev1/x", "method": "Log.Delete"}, "").ok(t)
	})
	t.Run("DeviceSubSrcInArgs", func(t *testing.T) {
		id := dev1.log(map[string]any{"msg": "y", "src": "dev1/y"})
		if es := dev1.list(map[string]any{"src": "dev1/y"}); len(es) != 1 || es[0].ID != id || es[0].Src != "dev1/y" {
			t.Fatalf("dev1/y lists %+v", es)
		}
		dev1.call(delCall(map[string]any{"src": "dev1/y"}), "").ok(t)
	})
	t.Run("DeviceForeignFrameSrc", func(t *testing.T) {
		// dev1 spoofs src dev2: 403 on dev1/rpc, nothing on dev2/rpc.
		dev2From := dev2.mark()
		for _, method := range []string{"Log.Log", "Log.List", "Log.Delete", "RPC.Ping"} {
			r := dev1.callOn(map[string]any{"src": "dev2", "method": method, "args": map[string]any{"msg": "forged"}}, "dev1/rpc")
			if e := r.fails(t, 403); !strings.Contains(e.Message, "dev2") {
				t.Errorf("%s: 403 message %q does not name the src", method, e.Message)
			}
			if r.Dst != "dev2" && r.Dst != "dev1" {
				t.Errorf("%s: response dst %q", method, r.Dst)
			}
		}
		// Prefix trick: dev10 is not under dev1.
		dev1.callOn(map[string]any{"src": "dev10", "method": "Log.List"}, "dev1/rpc").fails(t, 403)
		to := dev2.pingBarrier()
		for _, topic := range dev2.topicsBetween(dev2From, to) {
			if topic == "dev2/rpc" {
				continue
			}
			t.Errorf("dev2 received a message on %s", topic)
		}
		if n := countResponses(dev2.messages(dev2From)[:to-dev2From], "dev2/rpc"); n != 1 {
			t.Errorf("dev2 received %d responses on dev2/rpc, want only its own barrier: %s", n, dev2.describe(dev2From))
		}
		if es := ops.list(map[string]any{"src": "dev2"}); len(es) != 0 {
			t.Errorf("the forged Log.Log was stored: %+v", es)
		}
	})
	t.Run("DeviceArgsSrcOfAnother", func(t *testing.T) {
		ops.log(map[string]any{"src": "dev2", "msg": "dev2's"})
		for _, c := range []map[string]any{
			logCall(map[string]any{"src": "dev2", "msg": "on behalf"}),
			listCall(map[string]any{"src": "dev2"}),
			delCall(map[string]any{"src": "dev2"}),
			listCall(map[string]any{"src": "dev10"}),
			listCall(map[string]any{"src": "dev2/dev1"}),
		} {
			dev1.call(c, "").fails(t, 403)
		}
		if es := ops.list(map[string]any{"src": "dev2"}); len(es) != 1 {
			t.Errorf("dev2 has %d entries after dev1's attempts, want its 1", len(es))
		}
		ops.call(delCall(map[string]any{"src": "dev2"}), "").ok(t)
	})
	t.Run("ReaderListsAny", func(t *testing.T) {
		id := dev1.log(map[string]any{"msg": "for the dashboard"})
		es := dash.list(map[string]any{"src": "dev1"})
		if len(es) != 1 || es[0].ID != id {
			t.Fatalf("dash lists dev1: %+v, want %s", es, id)
		}
		dash.list(map[string]any{}) // its own src
		dev1.call(delCall(map[string]any{}), "").ok(t)
	})
	t.Run("ReaderMayNotWrite", func(t *testing.T) {
		for _, c := range []map[string]any{
			logCall(map[string]any{"msg": "x"}),
			logCall(map[string]any{"src": "dev1", "msg": "x"}),
			delCall(map[string]any{}),
			delCall(map[string]any{"src": "dev1"}),
		} {
			dash.call(c, "").fails(t, 403)
		}
		// A reader's frame src is its own too.
		dash.callOn(map[string]any{"src": "dev1", "method": "Log.List"}, "dash/rpc").fails(t, 403)
		if es := ops.list(map[string]any{"src": "dash"}); len(es) != 0 {
			t.Errorf("reader's Log.Log was stored: %+v", es)
		}
	})
	t.Run("AdminOnBehalf", func(t *testing.T) {
		id := ops.log(map[string]any{"src": "dev2", "msg": "by ops"})
		es := dev2.list(map[string]any{})
		if len(es) != 1 || es[0].ID != id {
			t.Fatalf("dev2 lists %+v, want ops's entry %s", es, id)
		}
		if es := ops.list(map[string]any{"src": "dev2"}); len(es) != 1 {
			t.Fatalf("ops lists dev2: %+v", es)
		}
		// Frame src of another: the reply goes to dev2/rpc, which ops may read.
		ops.subscribe("dev2/rpc", 1)
		r := ops.call(map[string]any{"src": "dev2", "method": "Log.List"}, "")
		if es := r.entries(t); len(es) != 1 {
			t.Fatalf("ops as dev2 lists %s", r.Raw)
		}
		ops.call(delCall(map[string]any{"src": "dev2"}), "").ok(t)
		if es := dev2.list(map[string]any{}); len(es) != 0 {
			t.Fatalf("after ops's Delete dev2 lists %+v", es)
		}
	})
}

// countResponses counts response frames on topic among ms.
func countResponses(ms []message, topic string) int {
	n := 0
	for _, m := range ms {
		if _, ok := decodeResponse(m); ok && m.Topic == topic {
			n++
		}
	}
	return n
}

// TestSecured_Subscriptions tries each filter with each role: the SUBACK
// grants or refuses it (paho: no error, code 0x80 in the token's Result),
// and a refused wildcard yields no other identity's replies or logs.
func TestSecured_Subscriptions(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...))
	url := "tcp://" + s.MQTT
	cases := []struct {
		user    string
		granted []string
		refused []string
	}{
		{"dev1",
			[]string{"dev1/#", "dev1/rpc", "dev1/log/console", "dev1/+/rpc", "dev1/x/log/#"},
			[]string{"#", "+/rpc", "dev2/rpc", "dev2/#", "+/log/#", "+/+/#", "dev10/#", "logbroker/rpc", "logbroker/#", "$SYS/#", "$share/g/#", "$share/g/dev2/rpc"}},
		{"dash",
			[]string{"+/log/#", "dev1/log/console", "+/log/console", "dash/#", "dash/rpc"},
			[]string{"#", "+/rpc", "dev1/rpc", "dev1/#", "+/+/#", "ops/rpc", "logbroker/rpc", "$SYS/#"}},
		{"ops",
			[]string{"#", "+/rpc", "dev1/rpc", "+/log/#", "logbroker/rpc"},
			nil},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			cl := dialAs(t, url, c.user)
			for _, f := range c.granted {
				if code := cl.trySubscribe(f, 1); code != 1 {
					t.Errorf("%s subscribing %q: SUBACK %#x, want 1 (granted)", c.user, f, code)
				}
			}
			for _, f := range c.refused {
				if code := cl.trySubscribe(f, 1); code != subRefused {
					t.Errorf("%s subscribing %q: SUBACK %#x, want 0x80 (refused)", c.user, f, code)
				}
			}
		})
	}

	t.Run("RefusedWildcardsYieldNothing", func(t *testing.T) {
		spy := dialAs(t, url, "dev1")
		spyDash := dialAs(t, url, "dash")
		for _, f := range []string{"#", "+/rpc", "dev2/rpc", "+/+", "+/+/+"} {
			spy.trySubscribe(f, 1)
			spyDash.trySubscribe(f, 1)
		}
		spyDash.subscribe("+/log/#", 0) // granted: logs, never replies
		from, fromDash := spy.mark(), spyDash.mark()
		dev2 := dialAs(t, url, "dev2")
		id := dev2.log(map[string]any{"msg": "secret?"}) // reply on dev2/rpc, live on dev2/log/console
		dev2.list(map[string]any{})
		ops := dialAs(t, url, "ops")
		ops.call(map[string]any{"method": "RPC.Ping"}, "").ok(t)
		// The reader sees dev2's live entry, nothing else.
		spyDash.waitMsg(fromDash, callTimeout, "dev2's live entry", func(m message) bool {
			return m.Topic == "dev2/log/console" && strings.Contains(string(m.Payload), id)
		})
		to, toDash := spy.pingBarrier(), spyDash.pingBarrier()
		for _, topic := range spy.topicsBetween(from, to) {
			if topic != "dev1/rpc" {
				t.Errorf("device dev1 received %s through a refused wildcard", topic)
			}
		}
		for _, topic := range spyDash.topicsBetween(fromDash, toDash) {
			if topic != "dash/rpc" && topic != "dev2/log/console" {
				t.Errorf("reader received %s through a refused wildcard", topic)
			}
		}
	})
}

// TestSecured_RequestsNeverDelivered: nobody, an admin subscribed to '#'
// included, receives the request frames sent to the service, retained or not.
func TestSecured_RequestsNeverDelivered(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...))
	url := "tcp://" + s.MQTT
	ops := dialAs(t, url, "ops")
	for _, f := range []string{"#", "logbroker/rpc", "logbroker/rpc/#"} {
		ops.subscribe(f, 1)
	}
	from := ops.mark()
	dev1 := dialAs(t, url, "dev1")
	dev1.log(map[string]any{"msg": "hello"})
	dev1.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "note"}}, "")
	dev1.call(map[string]any{"method": "Log.List"}, "logbroker/rpc/Log.List").entries(t)
	// The admin's own request, retained: not kept either.
	ops.publish("logbroker/rpc", 1, true, []byte(`{"id":99,"src":"ops","method":"RPC.Ping"}`))
	ops.waitMsg(from, callTimeout, "response to the retained ping", func(m message) bool {
		r, ok := decodeResponse(m)
		return ok && m.Topic == "ops/rpc" && string(r.ID) == "99"
	})
	dev1.pingBarrier()
	to := ops.pingBarrier()
	topics := ops.topicsBetween(from, to)
	for _, topic := range topics {
		if strings.HasPrefix(topic, "logbroker/rpc") {
			t.Errorf("admin subscribed to # received a request frame on %s", topic)
		}
	}
	if !slices.Contains(topics, "dev1/rpc") || !slices.Contains(topics, "dev1/log/console") {
		t.Errorf("admin on # did not see dev1's replies and logs (the check above proves nothing): %v", topics)
	}
	late := dialAs(t, url, "ops")
	lateFrom := late.mark()
	late.subscribe("logbroker/rpc/#", 1)
	lateTo := late.pingBarrier()
	for _, topic := range late.topicsBetween(lateFrom, lateTo) {
		if topic != "ops/rpc" {
			t.Errorf("a new subscriber got a retained %s", topic)
		}
	}
}

// TestSecured_Authentication: wrong, missing and unknown credentials get
// CONNACK "not authorized" (3.1.1 return code 5, MQTT 5 reason 0x87).
func TestSecured_Authentication(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "")
	url := "tcp://" + s.MQTT
	refused := []struct {
		name string
		o    dialOpts
	}{
		{"WrongPassword", dialOpts{user: "dev1", password: "pw-dev2"}},
		{"EmptyPassword", dialOpts{user: "dev1", noPassword: true}},
		{"AnotherUsersPassword", dialOpts{user: "ops", password: "pw-dash"}},
		{"UnknownUser", dialOpts{user: "mallory", password: "pw-mallory"}},
		{"Anonymous", dialOpts{}},
		{"PasswordIsTheHashPrefix", dialOpts{user: "dev1", password: "$2a$04$"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := tryDial(t, url, c.o)
			if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
				t.Fatalf("connect: %v, want %v (CONNACK return code 5)", err, packets.ErrorRefusedNotAuthorised)
			}
		})
	}
	t.Run("RawCodes", func(t *testing.T) {
		for _, c := range []struct {
			version    byte
			user, pass string
			want       byte
		}{
			{4, "dev1", "nope", 5}, {4, "", "", 5}, {4, "dev1", "", 5}, {4, "dev1", "pw-dev1", 0},
			{5, "dev1", "nope", 0x87}, {5, "", "", 0x87}, {5, "dev1", "pw-dev1", 0},
		} {
			if got := rawConnack(t, s.MQTT, c.version, c.user, c.pass); got != c.want {
				t.Errorf("MQTT v%d CONNECT user %q password %q: CONNACK code %#x, want %#x", c.version, c.user, c.pass, got, c.want)
			}
		}
	})
	t.Run("Mosquitto", func(t *testing.T) {
		out, code := runCmd(t, nil, "mosquitto_pub", "-h", "127.0.0.1", "-p", portOf(t, s.MQTT), "-u", "dev1", "-P", "wrong", "-t", "logbroker/rpc", "-m", "{}")
		if code == 0 || !strings.Contains(strings.ToLower(out), "not authori") {
			t.Fatalf("mosquitto_pub with a wrong password: exit %d, output %q; want a not-authorised refusal", code, out)
		}
	})
	t.Run("ClientIDOfAnotherUser", func(t *testing.T) {
		// dev2 may not take over dev1's session by reusing its client id.
		victim, err := tryDial(t, url, dialOpts{user: "dev1", password: "pw-dev1", clientID: "shared-id"})
		if err != nil {
			t.Fatal(err)
		}
		victim.subscribe("dev1/rpc", 1)
		if _, err := tryDial(t, url, dialOpts{user: "dev2", password: "pw-dev2", clientID: "shared-id"}); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Fatalf("dev2 with dev1's client id: %v, want refused", err)
		}
		victim.pingBarrier() // still connected and served
		// The same user may take its own session over.
		again, err := tryDial(t, url, dialOpts{user: "dev1", password: "pw-dev1", clientID: "shared-id"})
		if err != nil {
			t.Fatalf("dev1 reconnecting with its own client id: %v", err)
		}
		again.subscribe("dev1/rpc", 1)
		again.pingBarrier()
		victim.waitDropped(callTimeout)
	})
	if !strings.Contains(s.logs(), `msg="connection refused"`) || !strings.Contains(s.logs(), "user=mallory") {
		t.Errorf("refusals are not logged with the user name")
	}
}

// TestSecured_SrcPrefixIsPerLevel: device "dev" owns dev and dev/..., not
// dev1 (a string prefix) nor dev1's sub-sources.
func TestSecured_SrcPrefixIsPerLevel(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, account{"dev", "device"}, account{"dev1", "device"}), "--ws", "")
	url := "tcp://" + s.MQTT
	dev := dialAs(t, url, "dev")
	dev1 := dialAs(t, url, "dev1")
	id := dev1.log(map[string]any{"msg": "mine"})
	for _, src := range []string{"dev1", "dev1/x"} {
		dev.call(map[string]any{"method": "Log.List", "args": map[string]any{"src": src}}, "").fails(t, 403)
	}
	if code := dev.trySubscribe("dev1/#", 1); code != subRefused {
		t.Errorf("dev subscribing dev1/#: %#x, want refused", code)
	}
	var es []entry
	r := dev1.call(map[string]any{"method": "Log.List"}, "")
	if err := json.Unmarshal(r.ok(t).Result, &es); err != nil || len(es) != 1 || es[0].ID != id {
		t.Fatalf("dev1 lists %s", r.Raw)
	}
}

// TestSecured_WillTopic: mochi publishes a will with no ACL check and past
// the service, so a will is checked at CONNECT like a publish: a device may
// not leave one on another's log topic, nor anyone on the service's request
// topic (it would be delivered and retained as a request frame).
func TestSecured_WillTopic(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT
	for _, c := range []struct {
		user, topic string
		ok          bool
	}{
		{"dev1", "dev2/log/console", false},
		{"dev1", "dev1/log/console", false},
		{"dev1", "logbroker/rpc", false},
		{"dev1", "logbroker/rpc/Log.Delete", false},
		{"dash", "dev1/log/console", false},
		{"ops", "logbroker/rpc", false},
		{"dev1", "dev2/rpc", false}, // a device may publish there, but not retain, nor as src "forged" (trust_test.go)
		{"ops", "fleet/status/ops", true},
	} {
		_, err := tryDial(t, url, dialOpts{user: c.user, password: password(c.user), willTopic: c.topic})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s with a will on %s: %v, want accepted", c.user, c.topic, err)
		case !c.ok && !errors.Is(err, packets.ErrorRefusedNotAuthorised):
			t.Errorf("%s with a will on %s: %v, want not authorised", c.user, c.topic, err)
		}
	}
	if !strings.Contains(s.logs(), `err="will topic not allowed" topic=dev2/log/console`) {
		t.Error("the refusal of a will does not say why")
	}
}

// TestSecured_NoRetainedForgery: a device may publish to another's <id>/rpc
// (device-to-device RPC) but not leave a retained message there, which would
// greet its next subscriber as a standing forged reply. Admins may retain.
func TestSecured_NoRetainedForgery(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT
	dev1 := dialAs(t, url, "dev1")
	// Frames with dev1's own src: a foreign one is refused outright
	// (TestTrust_ForgedFrames).
	dev1.publish("dev2/rpc", 1, true, []byte(`{"id":1,"src":"dev1","dst":"dev2","result":{"forged":true}}`))
	dev1.publish("dash/rpc", 1, true, []byte(`{"id":1,"src":"dev1","dst":"dash","result":[]}`))
	ops := dialAs(t, url, "ops")
	ops.publish("fleet/config", 1, true, []byte(`{"interval":60}`))
	ops.pingBarrier()

	for _, c := range []struct{ user, topic string }{{"dev2", "dev2/rpc"}, {"dash", "dash/rpc"}} {
		fresh := dialAs(t, url, c.user) // subscribes to <user>/rpc: a retained message would come now
		to := fresh.pingBarrier()
		if n := countResponses(fresh.messages(0)[:to], c.topic); n != 1 {
			t.Errorf("%s got %d messages on %s, want only its ping's reply: %s", c.user, n, c.topic, fresh.describe(0))
		}
	}
	watcher := dialAs(t, url, "ops")
	from := watcher.mark()
	watcher.subscribe("fleet/config", 1)
	watcher.waitMsg(from, callTimeout, "the admin's retained message", func(m message) bool {
		return m.Topic == "fleet/config" && m.Retained
	})
}

// TestSecured_ForbiddenPublish: a 3.1.1 publish to a topic the ACL forbids
// is dropped at QoS 0 (the connection stays) and closes the connection at
// QoS 1 (3.1.1 has no negative PUBACK; mochi disconnects). Either way no
// subscriber receives it.
func TestSecured_ForbiddenPublish(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT
	dash := dialAs(t, url, "dash")
	dash.subscribe("+/log/#", 0)
	from := dash.mark()
	forged := []byte(`{"id":"00000000000000ff","src":"dev2","stream":"console","timestamp":1,"msg":"forged"}`)

	dev1 := dialAs(t, url, "dev1")
	dev1.publish("dev2/log/console", 0, false, forged)
	dev1.pingBarrier() // still connected and served
	tok := dev1.pc.Publish("dev2/log/console", 1, false, forged)
	if tok.WaitTimeout(callTimeout) && tok.Error() == nil {
		t.Error("a forbidden QoS 1 publish was acknowledged")
	}
	dev1.waitDropped(callTimeout)

	to := dash.pingBarrier()
	for _, topic := range dash.topicsBetween(from, to) {
		if topic != "dash/rpc" {
			t.Errorf("dashboard received a forged %s", topic)
		}
	}
}

// TestSecured_MQTT5ResponseTopic: an MQTT 5 Response Topic outside the
// caller's own topics is ignored (the answer goes to <src>/rpc); one under
// <identity>/ is used, with the Correlation Data.
func TestSecured_MQTT5ResponseTopic(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...), "--ws", "", "--http", "")
	url := "tcp://" + s.MQTT
	dev1 := dialAs(t, url, "dev1")
	dev2 := dialAs(t, url, "dev2")
	dev2From := dev2.mark()
	dev1From := dev1.mark()

	frame := `{"id":41,"src":"dev1","method":"RPC.Ping"}`
	out, code := runCmd(t, nil, "mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", portOf(t, s.MQTT),
		"-u", "dev1", "-P", password("dev1"), "-q", "1", "-t", "logbroker/rpc",
		"-D", "publish", "response-topic", "dev2/rpc", "-D", "publish", "correlation-data", "c41", "-m", frame)
	if code != 0 {
		t.Fatalf("mosquitto_pub: exit %d: %s", code, out)
	}
	dev1.waitMsg(dev1From, callTimeout, "the answer on dev1/rpc", func(m message) bool {
		r, ok := decodeResponse(m)
		return ok && m.Topic == "dev1/rpc" && string(r.ID) == "41"
	})
	to := dev2.pingBarrier()
	if n := countResponses(dev2.messages(dev2From)[:to-dev2From], "dev2/rpc"); n != 1 {
		t.Errorf("dev2 got %d responses on dev2/rpc, want only its own: %s", n, dev2.describe(dev2From))
	}

	// Its own Response Topic is honoured: mosquitto_rr waits there.
	out, code = runCmd(t, nil, "mosquitto_rr", "-V", "mqttv5", "-h", "127.0.0.1", "-p", portOf(t, s.MQTT),
		"-u", "dev1", "-P", password("dev1"), "-q", "1", "-t", "logbroker/rpc", "-e", "dev1/resp", "-W", "10",
		"-m", `{"id":42,"src":"dev1","method":"RPC.Ping"}`)
	if code != 0 || !strings.Contains(out, `"id":42`) {
		t.Fatalf("mosquitto_rr with response topic dev1/resp: exit %d: %s", code, out)
	}
}
