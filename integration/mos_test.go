package integration

import (
	"testing"
	"time"
)

// TestSecured_MosDeviceLogin behaves as the mos tool does with a device
// login (mos --port mqtt://dev1:pw@HOST/logbroker call ...): client id
// mos-<n>, frames with "params" and src "logbroker/rpc-resp/<client id>",
// replies awaited on that src's /rpc. The connection's own client id makes
// that src its own; another user can neither take the id, nor subscribe to
// its replies, nor call for its src.
func TestSecured_MosDeviceLogin(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, secFleet...))
	url := "tcp://" + s.MQTT
	const src = "logbroker/rpc-resp/mos-123"
	mos, err := tryDial(t, url, dialOpts{user: "dev1", password: password("dev1"), clientID: "mos-123"})
	if err != nil {
		t.Fatalf("connect as dev1 with client id mos-123: %v", err)
	}
	mos.src = src
	if code := mos.trySubscribe(src+"/rpc", 1); code != 1 {
		t.Fatalf("dev1 as mos-123 subscribing %s/rpc: SUBACK %#x, want 1", src, code)
	}

	id := mos.call(map[string]any{"method": "Log.Log", "params": map[string]any{"msg": "hi"}}, "").logID(t)
	es := mos.call(map[string]any{"method": "Log.List", "params": map[string]any{}}, "").entries(t)
	if len(es) != 1 || es[0].ID != id || es[0].Src != src || string(es[0].Msg) != `"hi"` {
		t.Fatalf("mos lists %+v, want its one entry %s from %s", es, id, src)
	}
	// Its identity's sources stay its own too.
	mos.call(map[string]any{"method": "Log.Log", "params": map[string]any{"msg": "as dev1", "src": "dev1"}}, "").logID(t)

	t.Run("FollowAnswersBeforeMosGivesUp", func(t *testing.T) {
		// mos waits 20 s for an answer: a follow without a timeout of its
		// own is answered ([]) by then (--follow-timeout, 15 s).
		r := mos.callWithin(map[string]any{"method": "Log.List", "params": map[string]any{"follow": true, "last": 0}}, "", 20*time.Second)
		if es := r.entries(t); len(es) != 0 {
			t.Fatalf("follow from now answered %+v", es)
		}
	})

	t.Run("OtherUser", func(t *testing.T) {
		// The id is dev1's while dev1 holds it.
		if _, err := tryDial(t, url, dialOpts{user: "dev2", password: password("dev2"), clientID: "mos-123"}); err == nil {
			t.Fatal("dev2 connected with client id mos-123, which dev1 holds")
		}
		dev2, err := tryDial(t, url, dialOpts{user: "dev2", password: password("dev2"), clientID: "mos-999"})
		if err != nil {
			t.Fatalf("connect dev2 as mos-999: %v", err)
		}
		for _, f := range []string{src + "/rpc", "logbroker/rpc-resp/+/rpc", "logbroker/rpc-resp/#"} {
			if code := dev2.trySubscribe(f, 1); code != subRefused {
				t.Fatalf("dev2 as mos-999 subscribing %q: SUBACK %#x, want refused", f, code)
			}
		}
		dev2.subscribe("dev2/rpc", 1)
		for _, m := range []string{"Log.Log", "Log.List", "Log.Delete"} {
			r := dev2.callOn(map[string]any{"src": src, "method": m, "params": map[string]any{"msg": "forged"}}, "dev2/rpc")
			r.fails(t, 403)
		}
		r := dev2.callOn(map[string]any{"src": "logbroker/rpc-resp/mos-999", "method": "Log.List", "params": map[string]any{"src": src}}, "logbroker/rpc-resp/mos-999/rpc")
		r.fails(t, 403)
	})

	// Nothing dev2 tried reached mos's source.
	es = mos.call(map[string]any{"method": "Log.List", "params": map[string]any{}}, "").entries(t)
	if len(es) != 1 || es[0].ID != id {
		t.Fatalf("after dev2's attempts mos lists %+v, want only %s", es, id)
	}
}
