package integration

import (
	"reflect"
	"testing"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// TestNATS_Catalog runs two logbroker nodes over one embedded 3-node
// JetStream cluster: entries logged on node A are listed by Log.Sources and
// Log.Streams on node B, a deleted stream is left out.
func TestNATS_Catalog(t *testing.T) {
	t.Parallel()
	c := jstest.NewCluster(t, 3)
	flags := []string{"--nats", c.URLs(), "--nats-stream", "CAT", "--nats-partitions", "2"}
	a := start(t, flags...)
	b := start(t, flags...)
	dev, dash := a.dial(t), b.dial(t)

	id1 := dev.log(map[string]any{"stream": "console", "msg": 1, "timestamp": 1000})
	id2 := dev.log(map[string]any{"stream": "console", "msg": 2, "timestamp": 2000})
	id3 := dev.log(map[string]any{"stream": "gone", "msg": 3, "timestamp": 3000})
	dev.call(map[string]any{"method": "Log.Delete", "args": map[string]any{"stream": "gone"}}, "").ok(t)
	if !(id1 < id2 && id2 < id3) {
		t.Fatalf("ids not increasing: %s %s %s", id1, id2, id3)
	}

	t.Run("Sources", func(t *testing.T) {
		r := dash.call(map[string]any{"method": "Log.Sources", "args": map[string]any{"after": dev.src[:len(dev.src)-1]}}, "")
		got := decodeStrict[sourceInfo](t, r)
		var mine []sourceInfo
		for _, s := range got {
			if s.Src == dev.src {
				mine = append(mine, s)
			}
		}
		ts := int64(2000)
		want := []sourceInfo{{Src: dev.src, LastID: id2, LastTimestamp: &ts}}
		if !reflect.DeepEqual(mine, want) {
			t.Errorf("Log.Sources on node B: %s, want %s with last_id %s, last_timestamp 2000", r.Result, dev.src, id2)
		}
	})
	t.Run("Streams", func(t *testing.T) {
		r := dash.call(map[string]any{"method": "Log.Streams", "args": map[string]any{"src": dev.src}}, "")
		want := []streamInfo{{Stream: "console", Count: 2, LastID: id2, LastTimestamp: 2000}}
		if got := decodeStrict[streamInfo](t, r); !reflect.DeepEqual(got, want) {
			t.Errorf("Log.Streams on node B\n got %+v\nwant %+v", got, want)
		}
	})
}
