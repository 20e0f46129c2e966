package broker

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/logbroker/logbroker/integration/await"
)

// waitFor bounds what a test waits for: long, for -race on busy cores.
const waitFor = 15 * time.Second

func TestInterested(t *testing.T) {
	b := New(Config{MQTTAddr: "127.0.0.1:0"})
	if !b.Interested("dev/log/console") {
		t.Error("before Start: Interested = false, want true (cannot tell yet)")
	}
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	connect := func(t *testing.T, id string) paho.Client {
		t.Helper()
		o := paho.NewClientOptions().AddBroker("tcp://" + b.MQTTAddr()).SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(waitFor)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		return c
	}
	done := func(t *testing.T, tok paho.Token) {
		t.Helper()
		if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("no acknowledgement within %v: %v", waitFor, tok.Error())
		}
	}
	want := func(t *testing.T, topic string, v bool) {
		t.Helper()
		if got := b.Interested(topic); got != v {
			t.Errorf("Interested(%q) = %v, want %v", topic, got, v)
		}
	}

	t.Run("Nobody", func(t *testing.T) {
		want(t, "dev/log/console", false)
		want(t, "dev/log/console", false) // cached
	})
	t.Run("WildcardThenUnsubscribe", func(t *testing.T) {
		c := connect(t, "dash")
		defer c.Disconnect(0)
		want(t, "dev/log/console", false) // cached before the SUBACK
		done(t, c.Subscribe("+/log/#", 0, nil))
		want(t, "dev/log/console", true)
		want(t, "a/b/log/s", false) // + is one level
		want(t, "dev/rpc", false)
		done(t, c.Unsubscribe("+/log/#"))
		want(t, "dev/log/console", false)
	})
	t.Run("SharedSubscription", func(t *testing.T) {
		c := connect(t, "worker")
		defer c.Disconnect(0)
		want(t, "dev/log/s1", false)
		done(t, c.Subscribe("$share/g/dev/log/+", 1, nil))
		want(t, "dev/log/s1", true)
		want(t, "other/log/s1", false)
	})
	t.Run("GoneWithItsSession", func(t *testing.T) {
		c := connect(t, "tail")
		done(t, c.Subscribe("dev/log/console", 0, nil))
		want(t, "dev/log/console", true)
		c.Disconnect(0)
		// The broker ends the session on its own goroutine.
		await.Until(t, waitFor, "Interested false after the only subscriber left", func() bool { return !b.Interested("dev/log/console") })
	})
}
