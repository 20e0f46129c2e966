package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

var _ Catalog = (*storage.Store)(nil)

// logAt appends msg to src's stream through c with the given timestamp and
// returns the entry id.
func (e *env) logAt(c *Conn, src, stream string, ts int64) string {
	e.t.Helper()
	r := e.mustCall(c, src, "Log.Log", fmt.Sprintf(`{"stream":%s,"msg":%d,"timestamp":%d}`, quote(stream), ts, ts))
	var res struct{ ID string }
	if err := json.Unmarshal(r.Result, &res); err != nil || res.ID == "" {
		e.t.Fatalf("Log.Log result %s", r.Result)
	}
	return res.ID
}

// source is the JSON of one Log.Sources element.
func source(src string, seq uint64, ts int64) string {
	return fmt.Sprintf(`{"src":%s,"last_id":%q,"last_timestamp":%d}`, quote(src), storage.FormatID(seq), ts)
}

func list(elems ...string) string { return "[" + strings.Join(elems, ",") + "]" }

func TestLogSources(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.svc.Open("admin")
	e.logAt(admin, "dev1", "console", 1000)
	e.logAt(admin, "dev1", "errors", 1001)
	e.logAt(admin, "dev1-x", "console", 2000)
	e.logAt(admin, "dev1/sensor", "temp", 3000)
	e.logAt(admin, "dev10", "console", 4000)
	e.logAt(admin, "dev2", "console", 5000)
	e.logAt(admin, "dev3", "console", 6000)
	e.mustCall(admin, "dev3", "Log.Delete", "")

	var (
		dev1   = source("dev1", 2, 1001)
		dev1x  = source("dev1-x", 1, 2000)
		dev1s  = source("dev1/sensor", 1, 3000)
		dev10  = source("dev10", 1, 4000)
		dev2   = source("dev2", 1, 5000)
		dev3   = `{"src":"dev3","last_id":"0000000000000001"}` // every entry deleted: no time
		all    = list(dev1, dev1x, dev1s, dev10, dev2, dev3)
		device = e.svc.OpenAs("dev", Caller{Identity: "dev1", Role: RoleDevice, Secured: true})
		reader = e.svc.OpenAs("dash", Caller{Identity: "dash", Role: RoleReader, Secured: true})
		ops    = e.svc.OpenAs("ops", Caller{Identity: "ops", Role: RoleAdmin, Secured: true})
	)
	tests := []struct {
		name, src string
		c         *Conn
		args      string
		want      string
	}{
		{"All", "dash-1", admin, "", all},
		{"NullArgs", "dash-1", admin, "null", all},
		{"Limit", "dash-1", admin, `{"limit":2}`, list(dev1, dev1x)},
		{"LimitClamped", "dash-1", admin, `{"limit":1e9}`, all},
		{"LimitIntegralFloat", "dash-1", admin, `{"limit":2.0}`, list(dev1, dev1x)},
		{"After", "dash-1", admin, `{"after":"dev1/sensor"}`, list(dev10, dev2, dev3)},
		{"AfterNoSource", "dash-1", admin, `{"after":"dev1/zzz","limit":1}`, list(dev10)},
		{"AfterEverything", "dash-1", admin, `{"after":"z"}`, `[]`},
		{"AfterEmpty", "dash-1", admin, `{"after":""}`, all},
		{"Reader", "dash", reader, "", all},
		{"ReaderTab", "dash/tab1", reader, `{"limit":1}`, list(dev1)},
		{"SecuredAdmin", "ops", ops, "", all},
		// A device sees its identity and the sources under it, never
		// lookalikes (dev1-x, dev10) or others.
		{"Device", "dev1", device, "", list(dev1, dev1s)},
		{"DeviceSub", "dev1/dash", device, `{"limit":1000}`, list(dev1, dev1s)},
		{"DeviceLimit", "dev1", device, `{"limit":1}`, list(dev1)},
		{"DeviceAfterOwn", "dev1", device, `{"after":"dev1"}`, list(dev1s)},
		{"DeviceAfterLookalike", "dev1", device, `{"after":"dev1-x"}`, list(dev1s)},
		{"DeviceAfterAll", "dev1", device, `{"after":"dev1/sensor"}`, `[]`},
		{"DeviceAfterBelow", "dev1", device, `{"after":"dev0","limit":2}`, list(dev1, dev1s)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := e.mustCall(tt.c, tt.src, "Log.Sources", tt.args)
			if string(r.Result) != tt.want {
				t.Errorf("Log.Sources %s\n got %s\nwant %s", tt.args, r.Result, tt.want)
			}
		})
	}
	t.Run("Paging", func(t *testing.T) {
		e.t = t
		var got []string
		after := ""
		for page := 0; page < 10; page++ {
			args := `{"limit":4}`
			if after != "" {
				args = `{"limit":4,"after":` + quote(after) + `}`
			}
			var res []json.RawMessage
			if err := json.Unmarshal(e.mustCall(reader, "dash", "Log.Sources", args).Result, &res); err != nil {
				t.Fatal(err)
			}
			if len(res) == 0 {
				break
			}
			for _, m := range res {
				got = append(got, string(m))
			}
			var last struct{ Src string }
			if err := json.Unmarshal(res[len(res)-1], &last); err != nil {
				t.Fatal(err)
			}
			after = last.Src
		}
		if l := list(got...); l != all {
			t.Errorf("pages of 4\n got %s\nwant %s", l, all)
		}
	})
	t.Run("BadArgs", func(t *testing.T) {
		e.t = t
		for _, tt := range []struct{ args, text string }{
			{`{"limit":0}`, "limit must be a positive integer"},
			{`{"limit":-1}`, "limit must be a positive integer"},
			{`{"limit":1.5}`, "limit must be a positive integer"},
			{`{"limit":"10"}`, "limit must be a positive integer"},
			{`{"after":5}`, "after must be a string"},
			{`{"after":null}`, "after must be a string"},
			{`[1]`, "args must be an object"},
		} {
			if r := e.call(admin, "dash-1", "Log.Sources", tt.args); r.code() != 400 || !strings.Contains(r.Error.Message, tt.text) {
				t.Errorf("Log.Sources %s: %s, want 400 with %q", tt.args, r.raw, tt.text)
			}
		}
	})
	t.Run("ReadsOwnWrites", func(t *testing.T) {
		e.t = t
		// A notification, then Log.Sources on the same connection.
		submit(admin, `{"src":"dev4","method":"Log.Log","args":{"msg":1,"timestamp":7000}}`)
		r := e.mustCall(admin, "dash-1", "Log.Sources", `{"after":"dev3"}`)
		if want := list(source("dev4", 1, 7000)); string(r.Result) != want {
			t.Errorf("Log.Sources after a Log.Log notification: %s, want %s", r.Result, want)
		}
	})
}

func TestLogStreams(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.svc.Open("admin")
	for i := range 3 {
		e.logAt(admin, "dev1", "console", int64(100+i))
	}
	e.logAt(admin, "dev1", "errors", 200)
	e.logAt(admin, "dev1", "console", 300)
	e.logAt(admin, "dev1/sensor", "temp", 400)
	e.logAt(admin, "dev2", "console", 500)
	e.logAt(admin, "dev2", "gone", 501)
	e.mustCall(admin, "dev2", "Log.Delete", `{"stream":"gone"}`)

	dev1 := `[{"stream":"console","count":4,"last_id":"0000000000000005","last_timestamp":300},` +
		`{"stream":"errors","count":1,"last_id":"0000000000000004","last_timestamp":200}]`
	dev2 := `[{"stream":"console","count":1,"last_id":"0000000000000001","last_timestamp":500}]`
	device := e.svc.OpenAs("dev", Caller{Identity: "dev1", Role: RoleDevice, Secured: true})
	reader := e.svc.OpenAs("dash", Caller{Identity: "dash", Role: RoleReader, Secured: true})
	tests := []struct {
		name, src string
		c         *Conn
		args      string
		code      int
		want      string // the result, or a part of the error message
	}{
		{"FrameSrc", "dev1", admin, "", 0, dev1},
		{"ArgsSrc", "dash-1", admin, `{"src":"dev1"}`, 0, dev1},
		{"DeletedStreamGone", "dash-1", admin, `{"src":"dev2"}`, 0, dev2},
		{"SubSource", "dash-1", admin, `{"src":"dev1/sensor"}`, 0, `[{"stream":"temp","count":1,"last_id":"0000000000000001","last_timestamp":400}]`},
		{"Unknown", "dash-1", admin, `{"src":"nobody"}`, 0, `[]`},
		{"DeviceOwn", "dev1", device, "", 0, dev1},
		{"DeviceOwnSub", "dev1", device, `{"src":"dev1/sensor"}`, 0, `[{"stream":"temp","count":1,"last_id":"0000000000000001","last_timestamp":400}]`},
		{"DeviceOther", "dev1", device, `{"src":"dev2"}`, 403, "may not call Log.Streams"},
		{"DeviceLookalike", "dev1", device, `{"src":"dev10"}`, 403, "may not call Log.Streams"},
		{"ReaderAny", "dash", reader, `{"src":"dev2"}`, 0, dev2},
		{"BadSrc", "dash-1", admin, `{"src":""}`, 400, "src is empty"},
		{"BadSrcType", "dash-1", admin, `{"src":1}`, 400, "src must be a string"},
		{"BadSrcWildcard", "dash-1", admin, `{"src":"dev+"}`, 400, "contains NUL, '+' or '#'"},
		{"BadArgs", "dash-1", admin, `"dev1"`, 400, "args must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := e.call(tt.c, tt.src, "Log.Streams", tt.args)
			switch {
			case r.code() != tt.code:
				t.Errorf("Log.Streams %s: %s, want code %d", tt.args, r.raw, tt.code)
			case tt.code == 0 && string(r.Result) != tt.want:
				t.Errorf("Log.Streams %s\n got %s\nwant %s", tt.args, r.Result, tt.want)
			case tt.code != 0 && !strings.Contains(r.Error.Message, tt.want):
				t.Errorf("Log.Streams %s: %s, want %q in the message", tt.args, r.raw, tt.want)
			}
		})
	}
	t.Run("ReadsOwnWrites", func(t *testing.T) {
		e.t = t
		submit(admin, `{"src":"dev2","method":"Log.Log","args":{"msg":1,"timestamp":600}}`)
		r := e.mustCall(admin, "dev2", "Log.Streams", "")
		want := `[{"stream":"console","count":2,"last_id":"0000000000000003","last_timestamp":600}]`
		if string(r.Result) != want {
			t.Errorf("Log.Streams after a Log.Log notification: %s, want %s", r.Result, want)
		}
	})
}

// plainStore hides every method of the store but LogStore's: a backend
// without a Catalog.
type plainStore struct{ LogStore }

// TestCatalogOptional: over a store that is not a Catalog, Log.Sources and
// Log.Streams are unknown methods, and RPC.List does not name them.
func TestCatalogOptional(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, pub: newRecorder()}
	e.svc = New(plainStore{store}, e.pub, Config{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := e.svc.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	c := e.svc.Open("c1")
	e.logAt(c, "dev1", "console", 1)
	if r := e.mustCall(c, "dev1", "RPC.List", ""); string(r.Result) != `["Log.Delete","Log.List","Log.Log","RPC.List","RPC.Ping"]` {
		t.Errorf("RPC.List = %s", r.Result)
	}
	for _, m := range []string{"Log.Sources", "Log.Streams", "Log.Fleet"} {
		if r := e.call(c, "dev1", m, ""); r.code() != 404 || !strings.Contains(r.Error.Message, "no such method: "+m) {
			t.Errorf("%s over a store without a Catalog: %s, want 404", m, r.raw)
		}
	}
}

// TestCatalogClosedStore: Log.Sources and Log.Streams on a closed store are
// answered 503, as the other methods are.
func TestCatalogClosedStore(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.svc.Open("c")
	e.logAt(c, "dev1", "console", 1)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"Log.Sources", "Log.Streams"} {
		if r := e.call(c, "dev1", m, ""); r.code() != 503 {
			t.Errorf("%s on a closed store: %s, want 503", m, r.raw)
		}
	}
}
