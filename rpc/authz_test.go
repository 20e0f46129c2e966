package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

func TestCaller_Permissions(t *testing.T) {
	device := Caller{Identity: "dev1", Role: RoleDevice, Secured: true}
	reader := Caller{Identity: "dash", Role: RoleReader, Secured: true}
	admin := Caller{Identity: "ops", Role: RoleAdmin, Secured: true}
	gone := Caller{Identity: "gone", Role: RoleNone, Secured: true}
	open := Caller{}
	mos := Caller{Identity: "dev1", Role: RoleDevice, Secured: true, Replies: []string{"logbroker/rpc-resp/mos-123"}}

	type check struct {
		method string
		src    string
		want   bool
	}
	cases := []struct {
		name   string
		caller Caller
		frames map[string]bool // frame src -> mayFrame
		calls  []check
	}{
		{"Device", device,
			map[string]bool{"dev1": true, "dev1/x": true, "dev1/rpc-resp/mos-1": true, "dev10": false, "dev": false, "dev2": false, "ops": false, "x/dev1": false},
			[]check{
				{"Log.Log", "dev1", true}, {"Log.List", "dev1", true}, {"Log.Delete", "dev1", true},
				{"Log.Log", "dev1/x", true}, {"Log.List", "dev1/x", true}, {"Log.Delete", "dev1/x", true},
				{"Log.Log", "dev2", false}, {"Log.List", "dev2", false}, {"Log.Delete", "dev2", false},
				{"Log.Log", "dev10", false}, {"Log.List", "dev1x/y", false},
				{"RPC.Ping", "dev2", true}, {"RPC.List", "dev2", true},
			}},
		{"DeviceAsMos", mos,
			map[string]bool{"dev1": true, "logbroker/rpc-resp/mos-123": true, "logbroker/rpc-resp/mos-123/x": true,
				"logbroker/rpc-resp/mos-1234": false, "logbroker/rpc-resp/mos-12": false, "logbroker/rpc-resp": false, "logbroker": false,
				"logbroker/rpc-resp/mos-124": false, "x/logbroker/rpc-resp/mos-123": false},
			[]check{
				{"Log.Log", "logbroker/rpc-resp/mos-123", true}, {"Log.List", "logbroker/rpc-resp/mos-123", true},
				{"Log.Delete", "logbroker/rpc-resp/mos-123", true}, {"Log.Log", "dev1", true},
				{"Log.Log", "logbroker/rpc-resp/mos-124", false}, {"Log.List", "logbroker/rpc-resp/mos-1234", false},
				{"Log.Delete", "logbroker", false},
			}},
		{"Reader", reader,
			map[string]bool{"dash": true, "dash/tab1": true, "dev1": false, "dashboard": false},
			[]check{
				{"Log.List", "dev1", true}, {"Log.List", "dash", true}, {"Log.List", "any/thing", true},
				{"Log.Log", "dash", false}, {"Log.Log", "dev1", false},
				{"Log.Delete", "dash", false}, {"Log.Delete", "dev1", false},
				{"RPC.Ping", "dash", true},
			}},
		{"Admin", admin,
			map[string]bool{"ops": true, "dev1": true, "anyone/else": true},
			[]check{
				{"Log.Log", "dev1", true}, {"Log.List", "dev2", true}, {"Log.Delete", "dev3/x", true},
			}},
		{"None", gone,
			map[string]bool{"gone": false, "gone/x": false, "dev1": false},
			[]check{
				{"Log.Log", "gone", false}, {"Log.List", "gone", false}, {"Log.Delete", "gone", false},
			}},
		{"Open", open,
			map[string]bool{"dev1": true, "anything": true},
			[]check{
				{"Log.Log", "dev1", true}, {"Log.List", "x", true}, {"Log.Delete", "y", true},
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for src, want := range c.frames {
				if got := c.caller.mayFrame(src); got != want {
					t.Errorf("%+v mayFrame(%q) = %v, want %v", c.caller, src, got, want)
				}
			}
			for _, k := range c.calls {
				a, ok := methodAccess[k.method]
				if !ok {
					t.Fatalf("method %s has no row in methodAccess", k.method)
				}
				if got := c.caller.may(a, k.src); got != k.want {
					t.Errorf("%+v may %s for %q = %v, want %v", c.caller, k.method, k.src, got, k.want)
				}
			}
		})
	}
}

// Every served method has a row in the permission table: a new method
// cannot slip through as accessNone by omission.
func TestMethodAccess_Complete(t *testing.T) {
	store, err := storage.Open("authz", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc := New(store, nil, Config{})
	defer func() { _ = svc.Shutdown(context.Background()) }()
	for _, m := range svc.methodNames() {
		if _, ok := methodAccess[m]; !ok {
			t.Errorf("method %s is served but has no row in methodAccess", m)
		}
	}
}

func TestRole_ParseString(t *testing.T) {
	for _, r := range []Role{RoleAdmin, RoleDevice, RoleReader} {
		got, ok := ParseRole(r.String())
		if !ok || got != r {
			t.Errorf("ParseRole(%q) = %v, %v; want %v", r.String(), got, ok, r)
		}
	}
	for _, s := range []string{"none", "", "Admin", "root", "unknown"} {
		if r, ok := ParseRole(s); ok {
			t.Errorf("ParseRole(%q) = %v, want refused", s, r)
		}
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t.Run("BurstThenRefill", func(t *testing.T) {
		b := newBucket(2, 3) // 2 tokens a second, 3 at once
		for i := range 3 {
			if !b.take(t0) {
				t.Fatalf("take %d of the burst refused", i+1)
			}
		}
		if b.take(t0) {
			t.Fatal("a 4th take at the same instant was allowed")
		}
		if b.take(t0.Add(400 * time.Millisecond)) {
			t.Fatal("0.8 token after 400ms was enough")
		}
		if !b.take(t0.Add(500 * time.Millisecond)) {
			t.Fatal("no token 500ms later at 2/s")
		}
	})
	t.Run("CappedAtBurst", func(t *testing.T) {
		b := newBucket(10, 2)
		b.take(t0)
		later := t0.Add(time.Hour)
		n := 0
		for b.take(later) {
			n++
		}
		if n != 2 {
			t.Fatalf("after an idle hour %d takes allowed, want the burst of 2", n)
		}
	})
	t.Run("BurstAtLeastOne", func(t *testing.T) {
		b := newBucket(0.5, 0)
		if !b.take(t0) {
			t.Fatal("first take refused with burst 0 (want at least 1)")
		}
		if b.take(t0.Add(time.Second)) {
			t.Fatal("a token after 1s at 0.5/s")
		}
		if !b.take(t0.Add(2 * time.Second)) {
			t.Fatal("no token after 2s at 0.5/s")
		}
	})
}

// TestFrameSrc: the src the broker checks on other clients' RPC topics is
// the one every receiver reads, or the frame is refused.
func TestFrameSrc(t *testing.T) {
	for _, c := range []struct {
		name, payload, want string // want "": refused
	}{
		{"Plain", `{"id":1,"src":"devA","method":"Sys.Ping"}`, "devA"},
		{"Path", `{"src":"devA/rpc-resp/mos-1","result":1}`, "devA/rpc-resp/mos-1"},
		{"EscapedValue", `{"src":"dev\u0041"}`, "devA"},
		{"EscapedKey", `{"\u0073rc":"devA"}`, "devA"},
		{"NotObject", `["src","devA"]`, ""},
		{"TwoObjects", `{"src":"devA"}{"src":"logbroker"}`, ""},
		{"Invalid", `{"src":"devA"`, ""},
		{"NoSrc", `{"id":1}`, ""},
		{"SrcNumber", `{"src":1}`, ""},
		{"Duplicate", `{"src":"devA","src":"logbroker"}`, ""},
		{"OtherCase", `{"src":"devA","SRC":"logbroker"}`, ""},
		{"OnlyOtherCase", `{"Src":"logbroker"}`, ""},
		{"Dollar", `{"src":"$SYS"}`, ""},
		{"Wildcard", `{"src":"dev+"}`, ""},
		{"BadUTF8", "{\"src\":\"devA\",\"m\":\"\xff\"}", ""},
		{"Empty", ``, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := FrameSrc([]byte(c.payload))
			if c.want == "" {
				if err == nil || !errors.Is(err, ErrDropped) {
					t.Fatalf("FrameSrc(%s) = %q, %v; want an ErrDropped", c.payload, got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("FrameSrc(%s) = %q, %v; want %q", c.payload, got, err, c.want)
			}
		})
	}
}

func TestCallerOwns(t *testing.T) {
	for _, c := range []struct {
		identity, src string
		want          bool
	}{
		{"devA", "devA", true},
		{"devA", "devA/sub", true},
		{"devA", "devAB", false},
		{"devA", "logbroker", false},
		{"", "/x", false},
		{"", "", false},
	} {
		if got := (Caller{Identity: c.identity, Role: RoleDevice, Secured: true}).Owns(c.src); got != c.want {
			t.Errorf("%q owns %q: %v, want %v", c.identity, c.src, got, c.want)
		}
	}
}

func TestDedupKey(t *testing.T) {
	p := []byte(`{"id":1,"src":"a","method":"Log.Log","args":{"msg":"x"}}`)
	k := DedupKey("a", []byte("1"), p)
	if k == (storage.DedupKey{}) || k != DedupKey("a", []byte("1"), p) {
		t.Fatalf("DedupKey is zero or not deterministic: %x", k)
	}
	for _, other := range []storage.DedupKey{
		DedupKey("a", []byte("2"), p),
		DedupKey("b", []byte("1"), p),
		DedupKey("a", []byte("1"), append(p[:len(p):len(p)], ' ')),
		DedupKey("a1", nil, p), // the length prefixes keep the parts apart
	} {
		if other == k {
			t.Errorf("another call has the same key %x", k)
		}
	}
	if n := testing.AllocsPerRun(100, func() { DedupKey("a", []byte("1"), p) }); n != 0 {
		t.Errorf("DedupKey allocates %v times", n)
	}
}
