package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// TestNATS_TwoNodes runs two logbroker nodes over one 3-node JetStream
// cluster embedded in the test process: a device logs on node A; on node B
// a follower is woken with the entry and a live-topic subscriber gets it,
// once; both nodes list it.
func TestNATS_TwoNodes(t *testing.T) {
	t.Parallel()
	c := jstest.NewCluster(t, 3)
	flags := []string{"--nats", c.URLs(), "--nats-replicas", "3", "--nats-partitions", "2"}
	a := start(t, flags...)
	b := start(t, flags...)
	if !strings.Contains(a.logs(), "sync") {
		t.Errorf("node A logged nothing about the NATS servers' sync setting:\n%s", a.logs())
	}

	dev, dash, live := a.dial(t), b.dial(t), b.dial(t)
	topic := dev.src + "/log/console"
	live.subscribe(topic, 1)
	mark := live.mark()
	wait := dash.startFollow(map[string]any{"src": dev.src}, map[string]any{"timeout": 20, "tag": "f"})

	id := dev.log(map[string]any{"msg": "hello from node A"})

	r := mustAnswer(t, wait, callTimeout, "follow on node B after a Log on node A")
	if es := r.entries(t); len(es) != 1 || es[0].ID != id || string(es[0].Msg) != `"hello from node A"` {
		t.Fatalf("follow on node B woken with %s, want entry %s", r.Raw, id)
	}
	m, next := live.waitMsg(mark, callTimeout, "live topic on node B", func(m message) bool { return m.Topic == topic })
	if !strings.Contains(string(m.Payload), id) {
		t.Errorf("live message %s does not carry id %s", m.Payload, id)
	}
	for _, n := range []struct {
		name string
		c    *client
	}{{"A", dev}, {"B", dash}} {
		if es := n.c.list(map[string]any{"src": dev.src}); len(es) != 1 || es[0].ID != id {
			t.Errorf("node %s lists %v, want entry %s", n.name, es, id)
		}
	}
	// Exactly once: a second entry arrives live, with nothing in between.
	id2 := dev.log(map[string]any{"msg": "second"})
	m, _ = live.waitMsg(next+1, callTimeout, "second live message on node B", func(m message) bool { return m.Topic == topic })
	if !strings.Contains(string(m.Payload), id2) {
		t.Errorf("live message after the first is %s, want entry %s (the first delivered twice?)", m.Payload, id2)
	}
}

// TestNATS_LeaderRestart kills the JetStream stream leader while a device
// logs through node A, and restarts it: every acknowledged Log.Log is
// listed through node B exactly once, ids strictly increasing.
func TestNATS_LeaderRestart(t *testing.T) {
	t.Parallel()
	c := jstest.NewCluster(t, 3)
	flags := []string{"--nats", c.URLs(), "--nats-stream", "LR"}
	a := start(t, flags...)
	b := start(t, flags...)
	dev, dash := a.dial(t), b.dial(t)

	var acked []string
	failed := 0
	logUntil := func(n int) {
		t.Helper()
		for target := len(acked) + n; len(acked) < target; {
			r, ok := dev.tryCall(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": len(acked) + failed}}, "", callTimeout)
			var res struct {
				ID string `json:"id"`
			}
			if !ok || r.Error != nil || json.Unmarshal(r.Result, &res) != nil || res.ID == "" {
				failed++
				if failed > 20 {
					t.Fatalf("too many failed Log calls; last: %s (answered %v)", r.Raw, ok)
				}
				continue
			}
			acked = append(acked, res.ID)
		}
	}
	logUntil(30)
	leader := c.StreamLeader("LR_0")
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.Stop(leader)
	logUntil(30)
	c.Start(leader)
	logUntil(30)

	listed := dash.listAll(dev.src)
	seen := map[string]int{}
	for i, e := range listed {
		seen[e.ID]++
		if i > 0 && e.ID <= listed[i-1].ID {
			t.Errorf("ids not strictly increasing: %s after %s", e.ID, listed[i-1].ID)
		}
	}
	for _, id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged entry %s listed %d times", id, seen[id])
		}
	}
	if len(listed) < len(acked) || len(listed) > len(acked)+failed {
		t.Errorf("listed %d entries for %d acknowledged and %d failed Log calls", len(listed), len(acked), failed)
	}
	t.Logf("%d Log calls acknowledged, %d failed; node B lists %d", len(acked), failed, len(listed))
}
