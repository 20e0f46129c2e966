package integration

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// fleetSource is one source of a Log.Fleet answer.
type fleetSource struct {
	Src           string `json:"src"`
	LastID        string `json:"last_id"`
	LastTimestamp *int64 `json:"last_timestamp"`
	Entries       int64  `json:"entries"`
	Errors        int64  `json:"errors"`
}

// fleetOf calls Log.Fleet (sorted by name) and returns its sources by name.
func (c *client) fleetOf() map[string]fleetSource {
	c.t.Helper()
	r := c.call(map[string]any{"method": "Log.Fleet", "args": map[string]any{"sort": "src", "limit": 1000}}, "").ok(c.t)
	var res struct {
		Sources []fleetSource `json:"sources"`
	}
	if err := json.Unmarshal(r.Result, &res); err != nil {
		c.t.Fatalf("Log.Fleet: %v: %s", err, r.Raw)
	}
	out := map[string]fleetSource{}
	for _, s := range res.Sources {
		out[s.Src] = s
	}
	return out
}

// TestNATS_Fleet: with the JetStream backend, node B's Log.Fleet lists a
// source logged before B started (from the catalog, with no counts) and
// counts the entries and errors logged through node A after it started
// (Subscribe delivers every node's entries).
func TestNATS_Fleet(t *testing.T) {
	t.Parallel()
	c := jstest.NewCluster(t, 3)
	flags := []string{"--nats", c.URLs(), "--nats-stream", "FLEET", "--nats-partitions", "2"}
	a := start(t, flags...)
	dev := a.dial(t)
	dev.log(map[string]any{"src": "early", "msg": "before B", "level": 0, "timestamp": 1000})

	b := start(t, flags...)
	dash := b.dial(t)
	deadline := time.Now().Add(2 * callTimeout)
	for {
		// B is up: from now on its Subscribe sees what A stores.
		if _, ok := dash.fleetOf()["early"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B's fleet never listed the source logged before it started: %v", dash.fleetOf())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	dev.log(map[string]any{"src": "late", "msg": "ok", "level": "info"})
	dev.log(map[string]any{"src": "late", "msg": "failed", "level": "error"})
	var got map[string]fleetSource
	for {
		got = dash.fleetOf()
		if l := got["late"]; l.Entries == 2 && l.Errors == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B's fleet %+v, want late with 2 entries, 1 error", got)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if e := got["early"]; e.Entries != 0 || e.LastTimestamp == nil || *e.LastTimestamp != 1000 {
		t.Errorf("early on node B: %+v, want its latest entry at 1000 and no counts (logged before B started)", e)
	}
}
