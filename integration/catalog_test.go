package integration

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// sourceInfo is an element of a Log.Sources result.
type sourceInfo struct {
	Src           string `json:"src"`
	LastID        string `json:"last_id"`
	LastTimestamp *int64 `json:"last_timestamp"`
}

// streamInfo is an element of a Log.Streams result.
type streamInfo struct {
	Stream        string `json:"stream"`
	Count         int64  `json:"count"`
	LastID        string `json:"last_id"`
	LastTimestamp int64  `json:"last_timestamp"`
}

// decodeStrict decodes a result, refusing fields the test does not know.
func decodeStrict[T any](t *testing.T, r response) []T {
	t.Helper()
	r.ok(t)
	var out []T
	if err := json.Unmarshal(r.Result, &out); err != nil || out == nil {
		t.Fatalf("result %s: not an array (%v)", r.Result, err)
	}
	var loose []map[string]json.RawMessage
	_ = json.Unmarshal(r.Result, &loose)
	for _, m := range loose {
		for k := range m {
			if !slices.Contains([]string{"src", "stream", "count", "last_id", "last_timestamp"}, k) {
				t.Errorf("unexpected field %q in %s", k, r.Result)
			}
		}
	}
	return out
}

// TestCatalog calls Log.Sources and Log.Streams on a secured broker as
// each role, and again after a restart: a device lists only its own
// sources, a reader every source; Log.Streams follows Log.List's rules.
func TestCatalog(t *testing.T) {
	t.Parallel()
	s := start(t, "--auth", writeUsers(t, append(secFleet, account{"dev10", "device"})...), "--ws", "")
	url := "tcp://" + s.MQTT
	ops := dialAs(t, url, "ops")
	ts := func(n int64) *int64 { return &n }
	logAt := func(src, stream string, at int64) string {
		return ops.log(map[string]any{"src": src, "stream": stream, "msg": "m", "timestamp": at})
	}
	logAt("dev1", "console", 1764080000001)
	dev1b := logAt("dev1", "errors", 1764080000002)
	dev1c := logAt("dev1", "console", 1764080000003)
	sub := logAt("dev1/sensor", "temp", 1764080000004)
	dev10 := logAt("dev10", "console", 1764080000005)
	dev2 := logAt("dev2", "console", 1764080000006)
	gone := logAt("dev3", "console", 1764080000007)
	ops.call(map[string]any{"method": "Log.Delete", "args": map[string]any{"src": "dev3"}}, "").ok(t)

	all := []sourceInfo{
		{"dev1", dev1c, ts(1764080000003)},
		{"dev1/sensor", sub, ts(1764080000004)},
		{"dev10", dev10, ts(1764080000005)},
		{"dev2", dev2, ts(1764080000006)},
		{"dev3", gone, nil}, // every entry deleted: listed, no time
	}
	dev1Streams := []streamInfo{
		{"console", 2, dev1c, 1764080000003},
		{"errors", 1, dev1b, 1764080000002},
	}
	sources := func(t *testing.T, c *client, args map[string]any) []sourceInfo {
		t.Helper()
		return decodeStrict[sourceInfo](t, c.call(map[string]any{"method": "Log.Sources", "args": args}, ""))
	}
	check := func(t *testing.T, s *server) {
		dash := dialAs(t, "tcp://"+s.MQTT, "dash")
		dev1 := dialAs(t, "tcp://"+s.MQTT, "dev1")
		t.Run("ReaderSeesAll", func(t *testing.T) {
			if got := sources(t, dash, nil); !reflect.DeepEqual(got, all) {
				t.Errorf("Log.Sources as a reader\n got %+v\nwant %+v", got, all)
			}
			if got := sources(t, dash, map[string]any{"after": "dev1/sensor", "limit": 2}); !reflect.DeepEqual(got, all[2:4]) {
				t.Errorf("Log.Sources after dev1/sensor, limit 2\n got %+v\nwant %+v", got, all[2:4])
			}
		})
		t.Run("DeviceSeesOwn", func(t *testing.T) {
			if got := sources(t, dev1, map[string]any{}); !reflect.DeepEqual(got, all[:2]) {
				t.Errorf("Log.Sources as dev1\n got %+v\nwant %+v", got, all[:2])
			}
		})
		t.Run("Streams", func(t *testing.T) {
			r := dash.call(map[string]any{"method": "Log.Streams", "args": map[string]any{"src": "dev1"}}, "")
			if got := decodeStrict[streamInfo](t, r); !reflect.DeepEqual(got, dev1Streams) {
				t.Errorf("Log.Streams of dev1 as a reader\n got %+v\nwant %+v", got, dev1Streams)
			}
			r = dev1.call(map[string]any{"method": "Log.Streams"}, "")
			if got := decodeStrict[streamInfo](t, r); !reflect.DeepEqual(got, dev1Streams) {
				t.Errorf("Log.Streams of its own src as dev1\n got %+v\nwant %+v", got, dev1Streams)
			}
			dev1.call(map[string]any{"method": "Log.Streams", "args": map[string]any{"src": "dev2"}}, "").fails(t, 403)
		})
		t.Run("BadLimit", func(t *testing.T) {
			dash.call(map[string]any{"method": "Log.Sources", "args": map[string]any{"limit": 0}}, "").fails(t, 400)
		})
	}
	t.Run("Running", func(t *testing.T) { check(t, s) })
	t.Run("Restarted", func(t *testing.T) { check(t, s.restart()) })
}
