package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// Sources are where the numbers come from, read at each scrape. A nil
// field leaves its metrics out.
type Sources struct {
	Service func() rpc.Stats
	Store   func() storage.Stats
	MQTT    func() MQTT
	Limits  func() Limits
	Capture func() rpc.CaptureStats // console capture; nil when it is off
	Refused func() Refused          // secured mode only
}

// Limits count what the broker's limits refused or ended.
type Limits struct {
	ConnectTimeouts  int64 // connections closed without a whole CONNECT in time (--connect-timeout)
	ConnsRefused     int64 // CONNECTs refused over --max-conns
	SubsRefused      int64 // filters refused over --max-subs-per-client
	SessionsExpired  int64 // persistent sessions ended by their expiry
	KeepaliveRefused int64 // 3.1.1 CONNECTs refused over --max-keepalive
}

// Refused counts what secured mode refused because a client would have
// spoken as someone else (hooks.Refusals).
type Refused struct {
	Frames int64 // publishes to <x>/rpc with a src not the publisher's
	Wills  int64 // CONNECTs refused for their will
}

// MQTT are the broker's numbers.
type MQTT struct {
	ClientsConnected int64
	MessagesDropped  int64
	InflightDropped  int64 // QoS 1/2 messages dropped: the client held too many unacknowledged
	SlowConsumers    int64 // clients disconnected for not reading their socket
	TooLarge         int64 // messages discarded as if sent: over the client's MQTT 5 Maximum Packet Size
	MessagesReceived int64
	MessagesSent     int64
}

// latencyBuckets span a fast List (sub-millisecond) to a follow at
// --follow-max (300 s by default).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics is the registry behind /metrics.
type Metrics struct {
	reg     *prometheus.Registry
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec

	// The series of each (method, code), looked up once: Observe runs on
	// every call, and WithLabelValues allocates.
	mu     sync.RWMutex
	series map[callKey]callSeries
}

type callKey struct {
	method string
	code   int
}

type callSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// New makes the registry: per-call metrics fed by Observe, and a collector
// over src.
func New(src Sources) *Metrics {
	m := &Metrics{
		series: map[callKey]callSeries{},
		reg:    prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logbroker_rpc_calls_total",
			Help: "RPC calls ended, by method and wire code (0: success).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "logbroker_rpc_call_duration_seconds",
			Help:    "Time from a call's start to its answer (Log.Log: until durable; Log.List: includes follow waits).",
			Buckets: latencyBuckets,
		}, []string{"method"}),
	}
	if src.Limits != nil {
		m.reg.MustRegister(limitsCollector(src.Limits))
	}
	m.reg.MustRegister(m.calls, m.latency, &collector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts one ended call; it is an rpc.Observer.
func (m *Metrics) Observe(method string, code int, d time.Duration) {
	k := callKey{method, code}
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if !ok {
		label := method
		if label == "" {
			label = "unknown"
		}
		s = callSeries{m.calls.WithLabelValues(label, strconv.Itoa(code)), m.latency.WithLabelValues(label)}
		m.mu.Lock()
		m.series[k] = s
		m.mu.Unlock()
	}
	s.count.Inc()
	s.latency.Observe(d.Seconds())
}

var _ rpc.Observer = (*Metrics)(nil).Observe

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// collector reads Sources at scrape time.
type collector struct {
	src Sources
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, nil, nil)
}

var (
	descDropped     = desc("logbroker_rpc_dropped_frames_total", "Request frames that could not be answered (not a JSON object, no usable src).")
	descWaiting     = desc("logbroker_rpc_follows_waiting", "Log.List follow calls waiting now.")
	descLive        = desc("logbroker_rpc_live_published_total", "Entries published on <src>/log/<stream>.")
	descEntries     = desc("logbroker_store_entries_total", "Entries made durable.")
	descBytes       = desc("logbroker_store_bytes_total", "Bytes of msg made durable.")
	descDeletes     = desc("logbroker_store_deletes_total", "Log.Delete calls made durable.")
	descExpired     = desc("logbroker_store_expired_total", "Entries removed by retention.")
	descSyncs       = desc("logbroker_store_fsyncs_total", "Batches written with a WAL fsync (group commits).")
	descPerSync     = desc("logbroker_store_entries_per_fsync", "Entries carried by one fsynced batch.")
	descDisk        = desc("logbroker_store_disk_bytes", "Disk space used by the store (WAL, tables, files awaiting deletion).")
	descTailHits    = desc("logbroker_store_tail_hits_total", "Log.List reads of one stream served from the tail cache.")
	descTailMisses  = desc("logbroker_store_tail_misses_total", "Log.List reads of one stream the tail cache could not serve (read from disk).")
	descTailBytes   = desc("logbroker_store_tail_bytes", "Memory held by the tail cache.")
	descClients     = desc("logbroker_mqtt_clients_connected", "MQTT connections now.")
	descMsgDropped  = desc("logbroker_mqtt_messages_dropped_total", "Messages dropped because a subscriber's queue was full.")
	descInflDropped = desc("logbroker_mqtt_inflight_dropped_total", "QoS 1 and 2 messages dropped because the client held too many unacknowledged ones.")
	descSlow        = desc("logbroker_mqtt_slow_consumers_total", "Clients disconnected because too many bytes waited for their socket.")
	descTooLarge    = desc("logbroker_mqtt_too_large_total", "Messages to a client discarded as if sent: larger than its MQTT 5 Maximum Packet Size.")
	descMsgReceived = desc("logbroker_mqtt_messages_received_total", "PUBLISH packets received from clients.")
	descMsgSent     = desc("logbroker_mqtt_messages_sent_total", "PUBLISH packets sent to clients.")
	descForged      = desc("logbroker_auth_forged_frames_total", "Publishes to an RPC topic (<x>/rpc, <x>/rpc/...) refused: not a frame whose src is the publisher's own (secured mode).")
	descWills       = desc("logbroker_auth_wills_refused_total", "Connections refused for their will: retained, on a forbidden topic, or a frame with a foreign src (secured mode).")

	descCapLines     = desc("logbroker_capture_lines_total", "Entries stored from captured device consoles (--capture).")
	descCapLost      = desc("logbroker_capture_lost_total", "Console messages lost on the way from devices, by the gaps in their seq.")
	descCapRestarts  = desc("logbroker_capture_restarts_total", "Device restarts seen in captured consoles (seq went back).")
	descCapUnparsed  = desc("logbroker_capture_unparsed_total", "Captured messages not in the console format, stored whole.")
	descCapUntracked = desc("logbroker_capture_untracked_total", "Captured messages of sources past the tracked-sources bound: stored, not joined or counted.")
	descCapLimited   = desc("logbroker_capture_rate_limited_total", "Captured messages dropped: their source published faster than --rate.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDropped, descWaiting, descLive, descEntries, descBytes, descDeletes,
		descExpired, descSyncs, descPerSync, descDisk, descTailHits, descTailMisses, descTailBytes, descClients, descMsgDropped, descInflDropped, descSlow, descTooLarge, descMsgReceived, descMsgSent,
		descCapLines, descCapLost, descCapRestarts, descCapUnparsed, descCapUntracked, descCapLimited, descForged, descWills} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	if c.src.Service != nil {
		st := c.src.Service()
		counter(descDropped, float64(st.Dropped))
		gauge(descWaiting, float64(st.Waiting))
		counter(descLive, float64(st.LivePublish))
	}
	if c.src.Store != nil {
		st := c.src.Store()
		counter(descEntries, float64(st.Entries))
		counter(descBytes, float64(st.Bytes))
		counter(descDeletes, float64(st.Deletes))
		counter(descExpired, float64(st.Expired))
		counter(descSyncs, float64(st.Syncs))
		gauge(descDisk, float64(st.DiskBytes))
		counter(descTailHits, float64(st.TailHits))
		counter(descTailMisses, float64(st.TailMisses))
		gauge(descTailBytes, float64(st.TailBytes))
		buckets := make(map[float64]uint64, len(storage.BatchBounds))
		var cum uint64
		for i, bound := range storage.BatchBounds {
			cum += st.Batches[i]
			buckets[float64(bound)] = cum
		}
		// Every entry made durable rode in exactly one synced batch.
		ch <- prometheus.MustNewConstHistogram(descPerSync, st.Syncs, float64(st.Entries), buckets)
	}
	if c.src.MQTT != nil {
		st := c.src.MQTT()
		gauge(descClients, float64(st.ClientsConnected))
		counter(descMsgDropped, float64(st.MessagesDropped))
		counter(descInflDropped, float64(st.InflightDropped))
		counter(descSlow, float64(st.SlowConsumers))
		counter(descTooLarge, float64(st.TooLarge))
		counter(descMsgReceived, float64(st.MessagesReceived))
		counter(descMsgSent, float64(st.MessagesSent))
	}
	if c.src.Capture != nil {
		st := c.src.Capture()
		counter(descCapLines, float64(st.Lines))
		counter(descCapLost, float64(st.Lost))
		counter(descCapRestarts, float64(st.Restarts))
		counter(descCapUnparsed, float64(st.Unparsed))
		counter(descCapUntracked, float64(st.Untracked))
		counter(descCapLimited, float64(st.Limited))
	}
	if c.src.Refused != nil {
		st := c.src.Refused()
		counter(descForged, float64(st.Frames))
		counter(descWills, float64(st.Wills))
	}
}
