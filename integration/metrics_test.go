package integration

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/logbroker/logbroker/integration/await"
)

// scrape is one GET /metrics, parsed.
type scrape map[string]*dto.MetricFamily

func (s *server) scrape(t testing.TB) scrape {
	t.Helper()
	cl := &http.Client{Timeout: callTimeout}
	resp, err := cl.Get("http://" + s.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: not the Prometheus text format: %v", err)
	}
	return fams
}

// value is the value of metric name with exactly the labels given (as
// "k=v" pairs); a histogram's value is its sample count. A series not
// exported yet counts as 0.
func (sc scrape) value(name string, labels ...string) float64 {
	f, ok := sc[name]
	if !ok {
		return 0
	}
	sort.Strings(labels)
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// waitMetric scrapes until cond holds for the value of name.
func (s *server) waitMetric(t testing.TB, what, name string, cond func(float64) bool, labels ...string) {
	t.Helper()
	var v float64
	if !await.Within(callTimeout*2, func() bool { v = s.scrape(t).value(name, labels...); return cond(v) }) {
		t.Fatalf("%s: %s%v is %v", what, name, labels, v)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := start(t)
	before := s.scrape(t)
	for _, name := range []string{
		"logbroker_rpc_dropped_frames_total", "logbroker_rpc_follows_waiting", "logbroker_store_entries_total",
		"logbroker_store_bytes_total", "logbroker_store_fsyncs_total", "logbroker_store_entries_per_fsync",
		"logbroker_store_disk_bytes", "logbroker_mqtt_clients_connected", "logbroker_mqtt_messages_dropped_total",
		"logbroker_mqtt_inflight_dropped_total", "logbroker_mqtt_slow_consumers_total", "logbroker_mqtt_too_large_total", "logbroker_store_expired_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	c := s.dial(t)
	// Entries are published live only while someone subscribes to them.
	c.subscribe(c.src+"/log/#", 0)
	msgs := []string{"boot ok", "sensor 21.5", "sensor 21.6"}
	var bytes int
	for i, m := range msgs {
		c.log(map[string]any{"msg": m, "stream": []string{"console", "sensor", "sensor"}[i]})
		bytes += len(fmt.Sprintf("%q", m)) // msg is stored as its JSON text
	}
	c.notify(map[string]any{"method": "Log.Log", "args": map[string]any{"msg": "quiet"}}, "")
	bytes += len(`"quiet"`)
	c.publish("logbroker/rpc", 1, false, []byte("not json")) // dropped: nobody to answer
	c.call(map[string]any{"method": "Log.Log", "args": map[string]any{}}, "").fails(t, 400)
	c.call(map[string]any{"method": "No.Such"}, "").fails(t, 404)
	if es := c.list(nil); len(es) != 4 {
		t.Fatalf("List: %d entries, want 4", len(es))
	}
	// An entry is listable before the store calls back its append (the
	// notification counts as a Log.Log call only then) and before its live
	// publish, which a goroutine of its own does after that: wait for the
	// live publishes, the last of these steps, before taking the figures.
	// Store below still checks that there were exactly 4.
	s.waitMetric(t, "the entries published live", "logbroker_rpc_live_published_total",
		func(v float64) bool { return v >= before.value("logbroker_rpc_live_published_total")+4 })
	after := s.scrape(t)

	t.Run("Calls", func(t *testing.T) {
		for _, c := range []struct {
			method, code string
			delta        float64
		}{
			{"Log.Log", "0", 4}, // the notification too
			{"Log.Log", "400", 1},
			{"Log.List", "0", 1},
			{"unknown", "404", 1},
		} {
			l := []string{"method=" + c.method, "code=" + c.code}
			if d := after.value("logbroker_rpc_calls_total", l...) - before.value("logbroker_rpc_calls_total", l...); d != c.delta {
				t.Errorf("calls_total%v moved by %v, want %v", l, d, c.delta)
			}
		}
		if d := after.value("logbroker_rpc_call_duration_seconds", "method=Log.Log"); d != 5 {
			t.Errorf("Log.Log latency samples %v, want 5", d)
		}
		if d := after.value("logbroker_rpc_dropped_frames_total") - before.value("logbroker_rpc_dropped_frames_total"); d != 1 {
			t.Errorf("dropped frames moved by %v, want 1", d)
		}
	})

	t.Run("Store", func(t *testing.T) {
		delta := func(name string) float64 { return after.value(name) - before.value(name) }
		if d := delta("logbroker_store_entries_total"); d != 4 {
			t.Errorf("entries moved by %v, want 4", d)
		}
		if d := delta("logbroker_store_bytes_total"); d != float64(bytes) {
			t.Errorf("bytes moved by %v, want %d", d, bytes)
		}
		syncs := delta("logbroker_store_fsyncs_total")
		if syncs < 1 || syncs > 4 {
			t.Errorf("fsyncs moved by %v, want 1..4 for 4 entries", syncs)
		}
		if n := after.value("logbroker_store_entries_per_fsync"); n != after.value("logbroker_store_fsyncs_total") {
			t.Errorf("entries_per_fsync has %v samples, want one per fsync (%v)", n, after.value("logbroker_store_fsyncs_total"))
		}
		if sum := after["logbroker_store_entries_per_fsync"].GetMetric()[0].GetHistogram().GetSampleSum(); sum != after.value("logbroker_store_entries_total") {
			t.Errorf("entries_per_fsync sums to %v, want the entries total %v", sum, after.value("logbroker_store_entries_total"))
		}
		if v := after.value("logbroker_store_disk_bytes"); v <= 0 {
			t.Errorf("disk bytes %v, want > 0", v)
		}
		if d := delta("logbroker_rpc_live_published_total"); d != 4 {
			t.Errorf("live publishes moved by %v, want 4", d)
		}
	})

	t.Run("FollowsWaiting", func(t *testing.T) {
		waiter := s.dial(t)
		wait := waiter.send(map[string]any{"method": "Log.List", "args": map[string]any{"src": "quiet-dev", "follow": true, "last": 0}, "timeout": 15}, "")
		s.waitMetric(t, "a follow waiting", "logbroker_rpc_follows_waiting", func(v float64) bool { return v == 1 })
		c.log(map[string]any{"src": "quiet-dev", "msg": "wake up"})
		if r, ok := wait(callTimeout); !ok || len(r.entries(t)) != 1 {
			t.Fatalf("the follow was not answered with the new entry")
		}
		s.waitMetric(t, "no follow waiting", "logbroker_rpc_follows_waiting", func(v float64) bool { return v == 0 })
	})

	t.Run("Clients", func(t *testing.T) {
		// The follow's client is gone (its subtest's cleanup): c is left.
		const n = 1
		s.waitMetric(t, "the test's one client", "logbroker_mqtt_clients_connected", func(v float64) bool { return v == n })
		extra := s.dial(t)
		s.waitMetric(t, "one more client", "logbroker_mqtt_clients_connected", func(v float64) bool { return v == n+1 })
		extra.pc.Disconnect(50)
		s.waitMetric(t, "the client gone", "logbroker_mqtt_clients_connected", func(v float64) bool { return v == n })
	})
}
