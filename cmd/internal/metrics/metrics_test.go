package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"

	"github.com/logbroker/logbroker/cmd/internal/metrics"
	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// gather returns the metric families of m by name.
func gather(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the one metric of a family, or of the one
// whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
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
	t.Fatalf("metric %s has no series with labels %v", name, want)
	return 0
}

func TestMetrics(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	mqtt := metrics.MQTT{ClientsConnected: 3, MessagesDropped: 2, MessagesReceived: 40, MessagesSent: 50}
	m := metrics.New(metrics.Sources{
		Service: func() rpc.Stats { return rpc.Stats{Dropped: 4, Waiting: 1, LivePublish: 9} },
		Store:   store.Stats,
		MQTT:    func() metrics.MQTT { return mqtt },
	})

	t.Run("Calls", func(t *testing.T) {
		m.Observe("Log.Log", 0, 2*time.Millisecond)
		m.Observe("Log.Log", 0, 3*time.Millisecond)
		m.Observe("Log.Log", 413, time.Millisecond)
		m.Observe("", 404, time.Millisecond)
		f := gather(t, m)
		for _, c := range []struct {
			method, code string
			want         float64
		}{{"Log.Log", "0", 2}, {"Log.Log", "413", 1}, {"unknown", "404", 1}} {
			if got := value(t, f, "logbroker_rpc_calls_total", map[string]string{"method": c.method, "code": c.code}); got != c.want {
				t.Errorf("calls{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
			}
		}
		if got := value(t, f, "logbroker_rpc_call_duration_seconds", map[string]string{"method": "Log.Log"}); got != 3 {
			t.Errorf("Log.Log latency samples = %v, want 3", got)
		}
	})
	t.Run("Store", func(t *testing.T) {
		for _, msg := range []string{`"a"`, `"bb"`} {
			if _, err := store.Append(context.Background(), storage.Record{Src: "dev1", Stream: "console", Msg: []byte(msg)}); err != nil {
				t.Fatal(err)
			}
		}
		f := gather(t, m)
		for name, want := range map[string]float64{
			"logbroker_store_entries_total":     2,
			"logbroker_store_bytes_total":       7,
			"logbroker_store_fsyncs_total":      2,
			"logbroker_store_entries_per_fsync": 2, // samples: one per fsync
		} {
			if got := value(t, f, name, nil); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		h := f["logbroker_store_entries_per_fsync"].GetMetric()[0].GetHistogram()
		if h.GetSampleSum() != 2 || h.GetBucket()[0].GetUpperBound() != 1 || h.GetBucket()[0].GetCumulativeCount() != 2 {
			t.Errorf("entries per fsync histogram = %v, want sum 2 and both in the <= 1 bucket", h)
		}
		if got := value(t, f, "logbroker_store_disk_bytes", nil); got <= 0 {
			t.Errorf("disk bytes = %v, want > 0", got)
		}
	})
	t.Run("ServiceAndMQTT", func(t *testing.T) {
		f := gather(t, m)
		for name, want := range map[string]float64{
			"logbroker_rpc_dropped_frames_total":     4,
			"logbroker_rpc_follows_waiting":          1,
			"logbroker_rpc_live_published_total":     9,
			"logbroker_mqtt_clients_connected":       3,
			"logbroker_mqtt_messages_dropped_total":  2,
			"logbroker_mqtt_messages_received_total": 40,
			"logbroker_mqtt_messages_sent_total":     50,
		} {
			if got := value(t, f, name, nil); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
	})
	t.Run("Handler", func(t *testing.T) {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != 200 {
			t.Fatalf("GET /metrics: %d", rec.Code)
		}
		for _, want := range []string{`logbroker_rpc_calls_total{code="0",method="Log.Log"} 2`, "go_goroutines", "logbroker_store_entries_per_fsync_bucket"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

// BenchmarkObserve measures the per-call cost that metrics add to every
// RPC call (a counter and a histogram, looked up by label values).
func BenchmarkObserve(b *testing.B) {
	m := metrics.New(metrics.Sources{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe("Log.Log", 0, 3*time.Millisecond)
		}
	})
}
