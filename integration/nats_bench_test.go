package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// TestNATSBench is a measurement harness, not a test of correctness: it
// runs only with LOGBROKER_NATS_BENCH=1 and writes its figures with t.Logf.
//
// It starts a 3-node JetStream cluster in this process (SyncAlways), two
// logbroker nodes over it (A and B) and one node on Pebble, then, in
// alternating rounds, runs `logbroker bench` (durable Log.Log) against the
// Pebble node with --clients clients, and against A and B at once with half
// the clients each. Last it measures follow latency with one logger and one
// follower in step: on Pebble both on the node; over NATS the logger on A,
// the follower on B.
//
//	LOGBROKER_NATS_BENCH=1 go test -run TestNATSBench -v -timeout 20m ./integration/
//
// LOGBROKER_NATS_BENCH_ROUNDS (3), _DURATION (10s), _CLIENTS (16),
// _INFLIGHT (32) and _FOLLOWS (300) change the load.
func TestNATSBench(t *testing.T) {
	if os.Getenv("LOGBROKER_NATS_BENCH") != "1" {
		t.Skip("measurement harness: set LOGBROKER_NATS_BENCH=1 to run it (see BENCHMARKS.md, Several nodes)")
	}
	rounds := envInt(t, "LOGBROKER_NATS_BENCH_ROUNDS", 3)
	clients := envInt(t, "LOGBROKER_NATS_BENCH_CLIENTS", 16)
	inflight := envInt(t, "LOGBROKER_NATS_BENCH_INFLIGHT", 32)
	follows := envInt(t, "LOGBROKER_NATS_BENCH_FOLLOWS", 300)
	duration := os.Getenv("LOGBROKER_NATS_BENCH_DURATION")
	if duration == "" {
		duration = "10s"
	}

	c := jstest.NewCluster(t, 3)
	flags := []string{"--nats", c.URLs(), "--nats-replicas", "3"}
	a := start(t, flags...)
	b := start(t, flags...)
	p := start(t)

	bench := func(s *server, prefix string, n int) natsBenchResult {
		args := []string{"bench", "--json", "--broker", "tcp://" + s.MQTT, "--prefix", prefix,
			"--method", "Log.Log", "--clients", strconv.Itoa(n), "--inflight", strconv.Itoa(inflight),
			"--duration", duration, "--broker-pid", strconv.Itoa(s.cmd.Process.Pid)}
		out, code := runBinary(t, 5*time.Minute, args...)
		if code != 0 {
			t.Fatalf("logbroker %v: exit code %d; output:\n%s", args, code, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, `{"method"`) {
				var res natsBenchResult
				if err := json.Unmarshal([]byte(line), &res); err != nil {
					t.Fatalf("bench result is not JSON (%v): %s", err, line)
				}
				return res
			}
		}
		t.Fatalf("no JSON result in the bench output:\n%s", out)
		return natsBenchResult{}
	}
	var pebbleRates, natsRates, ratios []float64
	for r := range rounds {
		pr := bench(p, fmt.Sprintf("peb%d", r), clients)
		t.Logf("round %d Pebble: %.0f calls/s, p50 %.2f ms, p99 %.2f ms, broker %.1f µs CPU/call, %d ok, %d failed",
			r, pr.Rate, pr.Latency.P50, pr.Latency.P99, pr.CPUPerCall, pr.OK, pr.Failed+pr.Timeouts+pr.Lost)

		cpu0 := selfCPU(t)
		var ra, rb natsBenchResult
		var wg sync.WaitGroup
		wg.Go(func() { ra = bench(a, fmt.Sprintf("natsA%d", r), clients/2) })
		wg.Go(func() { rb = bench(b, fmt.Sprintf("natsB%d", r), clients-clients/2) })
		wg.Wait()
		natsCPU := selfCPU(t) - cpu0
		total := ra.Rate + rb.Rate
		calls := ra.OK + rb.OK
		t.Logf("round %d NATS A+B: %.0f calls/s (A %.0f, B %.0f), A p50 %.2f ms p99 %.2f ms, B p50 %.2f ms p99 %.2f ms, "+
			"node CPU/call A %.1f µs B %.1f µs, NATS servers (this process) %.1f µs CPU/call, %d ok, %d failed",
			r, total, ra.Rate, rb.Rate, ra.Latency.P50, ra.Latency.P99, rb.Latency.P50, rb.Latency.P99,
			ra.CPUPerCall, rb.CPUPerCall, natsCPU.Seconds()*1e6/float64(max(calls, 1)), calls,
			ra.Failed+ra.Timeouts+ra.Lost+rb.Failed+rb.Timeouts+rb.Lost)
		pebbleRates = append(pebbleRates, pr.Rate)
		natsRates = append(natsRates, total)
		ratios = append(ratios, total/pr.Rate)
	}
	t.Logf("Log.Log calls/s over %d rounds: Pebble median %.0f %v; NATS A+B median %.0f %v; NATS/Pebble per round median %.2f %.2f",
		rounds, median(pebbleRates), rounded(pebbleRates), median(natsRates), rounded(natsRates), median(ratios), ratios)

	report := func(name string, l followLat, took time.Duration) {
		t.Logf("follow %s (%d entries in %.1fs): Log.Log response -> follower answer p50 %.2f ms p99 %.2f ms max %.2f ms (%d answered first); "+
			"Log.Log sent -> follower answer p50 %.2f ms p99 %.2f ms; Log.Log round trip p50 %.2f ms p99 %.2f ms",
			name, follows, took.Seconds(), ms(l.afterResp, 50), ms(l.afterResp, 99), ms(l.afterResp, 100), l.early,
			ms(l.afterSend, 50), ms(l.afterSend, 99), ms(l.rtt, 50), ms(l.rtt, 99))
	}
	measure := func(name string, logNode, followNode *server) {
		t0 := time.Now()
		l := followLatency(t, logNode, followNode, follows)
		report(name, l, time.Since(t0))
	}
	measure("Pebble, logger and follower on one node, idle", p, p)
	measure("NATS, logger on A, follower on B, idle", a, b)

	// The same under a background load of --rate Log.Log/s (each backend
	// carries it), spread like the throughput runs; the bench outlasts the
	// follow loop (its duration is logged beside it).
	rate := envInt(t, "LOGBROKER_NATS_BENCH_LOAD_RATE", 3000)
	loaded := func(name string, nodes []*server, logNode, followNode *server) {
		var wg sync.WaitGroup
		var results []natsBenchResult
		var mu sync.Mutex
		for i, s := range nodes {
			wg.Go(func() {
				args := []string{"bench", "--json", "--broker", "tcp://" + s.MQTT, "--prefix", fmt.Sprintf("load%d", i),
					"--method", "Log.Log", "--clients", strconv.Itoa(clients / len(nodes)), "--inflight", strconv.Itoa(inflight),
					"--rate", strconv.Itoa(rate / len(nodes)), "--duration", "12s"}
				out, code := runBinary(t, 5*time.Minute, args...)
				if code != 0 {
					t.Errorf("logbroker %v: exit code %d; output:\n%s", args, code, out)
					return
				}
				for _, line := range strings.Split(out, "\n") {
					var res natsBenchResult
					if strings.HasPrefix(line, `{"method"`) && json.Unmarshal([]byte(line), &res) == nil {
						mu.Lock()
						results = append(results, res)
						mu.Unlock()
					}
				}
			})
		}
		// Measure once the load is on: its first source has entries.
		probe := logNode.dial(t)
		deadline := time.Now().Add(20 * time.Second)
		for len(probe.list(map[string]any{"src": "load0-0", "last": 1})) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("background load: no entry of load0-0 within 20s")
			}
		}
		measure(fmt.Sprintf("%s, under %d Log.Log/s", name, rate), logNode, followNode)
		wg.Wait()
		for _, r := range results {
			t.Logf("  background load: %.0f calls/s, p50 %.2f ms p99 %.2f ms, %d ok", r.Rate, r.Latency.P50, r.Latency.P99, r.OK)
		}
	}
	loaded("Pebble, logger and follower on one node", []*server{p}, p, p)
	loaded("NATS, logger on A, follower on B", []*server{a, b}, a, b)
}

// natsBenchResult is the part of `logbroker bench --json` the harness reports.
type natsBenchResult struct {
	OK         int64   `json:"ok"`
	Failed     int64   `json:"failed"`
	Timeouts   int64   `json:"timeouts"`
	Lost       int64   `json:"lost"`
	Rate       float64 `json:"calls_per_sec"`
	CPUPerCall float64 `json:"broker_cpu_us_per_call"`
	Latency    struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"latency"`
}

// followLat holds sorted samples of one followLatency run.
type followLat struct {
	afterResp []time.Duration // Log.Log response received -> follow answer received (0 when earlier)
	afterSend []time.Duration // Log.Log published -> follow answer received
	rtt       []time.Duration // Log.Log published -> its response received
	early     int             // follow answers received before the Log.Log response
}

// followLatency logs n entries one at a time through logNode; before each,
// a follower on followNode starts a Log.List follow after the last id (made
// sure to be waiting by a Ping answered after it). Arrival times are taken
// in paho's handlers.
func followLatency(t *testing.T, logNode, followNode *server, n int) followLat {
	t.Helper()
	type arrival struct {
		payload []byte
		at      time.Time
	}
	dial := func(s *server, id string) (mqtt.Client, chan arrival) {
		ch := make(chan arrival, 16)
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + s.MQTT).SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false).
			SetConnectTimeout(callTimeout)
		pc := mqtt.NewClient(opts)
		if tok := pc.Connect(); !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", s.MQTT, tok.Error())
		}
		t.Cleanup(func() { pc.Disconnect(50) })
		tok := pc.Subscribe(id+"/rpc", 1, func(_ mqtt.Client, m mqtt.Message) {
			ch <- arrival{append([]byte(nil), m.Payload()...), time.Now()}
		})
		if !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
			t.Fatalf("subscribe %s/rpc: %v", id, tok.Error())
		}
		return pc, ch
	}
	seq := clientSeq.Add(1)
	logger, logCh := dial(logNode, fmt.Sprintf("lat-log-%d", seq))
	follower, folCh := dial(followNode, fmt.Sprintf("lat-fol-%d", seq))
	src := fmt.Sprintf("lat-log-%d", seq)
	fsrc := fmt.Sprintf("lat-fol-%d", seq)

	type reply struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	await := func(ch chan arrival, id int, what string) (reply, time.Time) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case a := <-ch:
				var r reply
				if err := json.Unmarshal(a.payload, &r); err != nil {
					t.Fatalf("%s: bad response %s", what, a.payload)
				}
				if r.ID != id {
					continue
				}
				if r.Error != nil {
					t.Fatalf("%s: error %s", what, a.payload)
				}
				return r, a.at
			case <-deadline:
				t.Fatalf("%s: no response with id %d within 20s", what, id)
			}
		}
	}
	pub := func(pc mqtt.Client, frame string) {
		t.Helper()
		if tok := pc.Publish("logbroker/rpc", 1, false, frame); !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}

	var out followLat
	after := ""
	id := 0
	for i := range n {
		args := map[string]any{"src": src, "follow": true}
		if after != "" {
			args["after"] = after
		}
		ab, _ := json.Marshal(args)
		id++
		fid := id
		pub(follower, fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.List","args":%s,"timeout":20}`, fid, fsrc, ab))
		id++
		pub(follower, fmt.Sprintf(`{"id":%d,"src":%q,"method":"RPC.Ping"}`, id, fsrc))
		await(folCh, id, "Ping after the follow")

		id++
		sent := time.Now()
		pub(logger, fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":%d}}`, id, src, i))
		lr, respAt := await(logCh, id, "Log.Log")
		fr, folAt := await(folCh, fid, "follow")
		var logged struct {
			ID string `json:"id"`
		}
		var listed []struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(lr.Result, &logged) != nil || json.Unmarshal(fr.Result, &listed) != nil ||
			len(listed) != 1 || listed[0].ID != logged.ID {
			t.Fatalf("follow answered %s, want the entry just logged (%s)", fr.Result, lr.Result)
		}
		after = logged.ID
		d := folAt.Sub(respAt)
		if d < 0 {
			out.early++
			d = 0
		}
		out.afterResp = append(out.afterResp, d)
		out.afterSend = append(out.afterSend, folAt.Sub(sent))
		out.rtt = append(out.rtt, respAt.Sub(sent))
	}
	slices.Sort(out.afterResp)
	slices.Sort(out.afterSend)
	slices.Sort(out.rtt)
	return out
}

// ms is the p-th percentile (nearest rank) of sorted ds in milliseconds.
func ms(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	i := (len(ds)*p+99)/100 - 1
	i = min(max(i, 0), len(ds)-1)
	return float64(ds[i]) / float64(time.Millisecond)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}

// selfCPU is the user+system CPU time this process has used.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
