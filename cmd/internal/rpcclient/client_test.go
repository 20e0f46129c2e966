package rpcclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/logbroker/logbroker/broker"
	"github.com/logbroker/logbroker/cmd/internal/rpcclient"
	"github.com/logbroker/logbroker/hooks"
	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// wait bounds every step; generous for -race on busy cores.
const wait = 20 * time.Second

// startBroker runs the real broker and log service in process on a free
// loopback port, with an in-memory store, and returns its tcp:// URL.
func startBroker(t *testing.T) string {
	t.Helper()
	store, err := storage.Open(t.TempDir(), storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Config{MQTTAddr: "127.0.0.1:0"})
	svc := rpc.New(store, hooks.Sender{P: b}, rpc.Config{})
	if err := b.AddHook(new(hooks.Open), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.AddHook(hooks.NewRPC(svc, nil), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = svc.Shutdown(ctx)
		_ = b.Close()
		_ = store.Close()
	})
	return "tcp://" + b.MQTTAddr()
}

func dial(t *testing.T, opts rpcclient.Options) *rpcclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := rpcclient.Dial(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func call(t *testing.T, c *rpcclient.Client, method string, args any, opts ...rpcclient.CallOption) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return c.Call(ctx, method, args, opts...)
}

func TestClient_Call(t *testing.T) {
	url := startBroker(t)
	c := dial(t, rpcclient.Options{Broker: url, Src: "dev1"})

	t.Run("Result", func(t *testing.T) {
		res, err := call(t, c, "Log.Log", map[string]any{"msg": "hi"})
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ ID string }
		if err := json.Unmarshal(res, &r); err != nil || r.ID == "" {
			t.Fatalf("Log.Log result %s (%v), want {id}", res, err)
		}
		res, err = call(t, c, "Log.List", json.RawMessage(`{"last":1}`))
		if err != nil {
			t.Fatal(err)
		}
		var es []struct{ ID, Src string }
		if err := json.Unmarshal(res, &es); err != nil || len(es) != 1 || es[0].ID != r.ID || es[0].Src != "dev1" {
			t.Errorf("Log.List = %s (%v), want entry %s of dev1", res, err, r.ID)
		}
	})

	t.Run("NoResult", func(t *testing.T) {
		res, err := call(t, c, "Log.Delete", nil)
		if err != nil || res != nil {
			t.Errorf("Log.Delete = %s, %v; want no result, no error", res, err)
		}
	})

	t.Run("CallError", func(t *testing.T) {
		_, err := call(t, c, "Log.Nope", nil)
		var ce *rpcclient.CallError
		if !errors.As(err, &ce) || ce.Code != 404 {
			t.Fatalf("err = %v, want a *CallError 404", err)
		}
		if got, want := err.Error(), "error 404: no such method: Log.Nope"; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		_, err = call(t, c, "Log.Log", map[string]any{})
		if !errors.As(err, &ce) || ce.Code != 400 {
			t.Errorf("Log.Log without msg: err = %v, want a *CallError 400", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		const n = 40
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := call(t, c, "Log.Log", map[string]any{"msg": i, "stream": "conc"})
				var r struct{ ID string }
				if err == nil {
					err = json.Unmarshal(res, &r)
				}
				ids[i], errs[i] = r.ID, err
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Errorf("id %s answered twice", ids[i])
			}
			seen[ids[i]] = true
		}
	})

	t.Run("Wait", func(t *testing.T) {
		// The frame's timeout bounds a follow: [] after about a second.
		res, err := call(t, c, "Log.List", map[string]any{"src": "nobody", "follow": true}, rpcclient.Wait(time.Second))
		if err != nil || string(res) != "[]" {
			t.Errorf("follow = %s, %v; want []", res, err)
		}
	})

	t.Run("SharedSrc", func(t *testing.T) {
		// Two clients with one src share the reply topic; each takes
		// only the responses to its own calls.
		c2 := dial(t, rpcclient.Options{Broker: url, Src: "dev1"})
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			cl := c
			if i%2 == 1 {
				cl = c2
			}
			wg.Go(func() { _, errs[i] = call(t, cl, "Log.List", map[string]any{"last": 1}) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Error(err)
		}
	})
}

func TestClient_ConnectionLost(t *testing.T) {
	url := startBroker(t)
	c := dial(t, rpcclient.Options{Broker: url, Src: "lost", ClientID: "lost-client"})

	// A follow waits at the service...
	done := make(chan error, 1)
	go func() {
		_, err := call(t, c, "Log.List", map[string]any{"follow": true}, rpcclient.Wait(15*time.Second))
		done <- err
	}()
	// ...until another connection takes over the client id, which
	// disconnects c.
	waitFollowing(t, c)
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID("lost-client").SetAutoReconnect(false)
	other := mqtt.NewClient(o)
	if tok := other.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect the usurper: %v", tok.Error())
	}
	t.Cleanup(func() { other.Disconnect(0) })

	select {
	case err := <-done:
		if !errors.Is(err, rpcclient.ErrConnectionLost) {
			t.Fatalf("follow ended with %v, want ErrConnectionLost", err)
		}
	case <-time.After(wait):
		t.Fatal("the follow did not fail when its connection was lost")
	}
	// c reconnects on its own and subscribes again before the next call.
	// Its reconnect and the usurper's connect are two takeovers of one
	// client id: the broker may end c's new connection once more before
	// c's next reconnect wins (the usurper does not reconnect). A call
	// made meanwhile fails with ErrConnectionLost and is not resent; any
	// other error, or no success within the deadline, fails the test.
	deadline := time.Now().Add(wait)
	for {
		_, err := call(t, c, "Log.Log", map[string]any{"msg": "back"})
		if err == nil {
			break
		}
		if !errors.Is(err, rpcclient.ErrConnectionLost) || time.Now().After(deadline) {
			t.Fatalf("call after reconnect: %v", err)
		}
	}
}

// waitFollowing polls until the service has a follow of c waiting: a
// Log.Log on another client's src must not race ahead of it.
func waitFollowing(t *testing.T, c *rpcclient.Client) {
	t.Helper()
	// The follow was published before; a later call of the same
	// connection is processed after it (PROTOCOL §5), so its answer means
	// the follow is in place.
	if _, err := call(t, c, "Log.List", map[string]any{"src": "nobody"}); err != nil {
		t.Fatal(err)
	}
}

func TestClient_Dial(t *testing.T) {
	t.Run("Refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := rpcclient.Dial(ctx, rpcclient.Options{Broker: "tcp://" + addr}); err == nil {
			t.Fatal("Dial to a closed port succeeded")
		}
	})
	t.Run("BadScheme", func(t *testing.T) {
		_, err := rpcclient.Dial(context.Background(), rpcclient.Options{Broker: "http://127.0.0.1:1"})
		if err == nil {
			t.Fatal("Dial with http:// succeeded")
		}
	})
	t.Run("Closed", func(t *testing.T) {
		c := dial(t, rpcclient.Options{Broker: startBroker(t)})
		if got := c.Src(); len(got) != len("cli-")+12 {
			t.Errorf("default src %q, want cli-<12 hex>", got)
		}
		c.Close()
		if _, err := call(t, c, "Log.List", nil); !errors.Is(err, rpcclient.ErrClosed) {
			t.Errorf("Call after Close: %v, want ErrClosed", err)
		}
	})
}

func ExampleClient_Call() {
	ctx := context.Background()
	c, err := rpcclient.Dial(ctx, rpcclient.Options{Broker: "tcp://127.0.0.1:1883", Src: "dev1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	res, err := c.Call(ctx, "Log.Log", map[string]any{"msg": "boot ok"})
	var ce *rpcclient.CallError
	if errors.As(err, &ce) {
		fmt.Println("refused:", ce.Code, ce.Message)
		return
	}
	fmt.Println(string(res), err)
}
