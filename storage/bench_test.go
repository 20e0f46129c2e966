package storage_test

// Benchmarks of the Pebble store. Run them on a quiet machine, e.g.
//
//	go test -run '^$' -bench . -benchmem ./storage/
//
// Setup sizes come from environment variables so a quick run stays quick:
// LOGBROKER_BENCH_ENTRIES (entries of the List benchmarks' source, default
// 100000), LOGBROKER_BENCH_DELETE (entries of the deleted stream, default
// 10000), LOGBROKER_BENCH_LINES (console lines of BenchmarkDiskSize,
// default 1000000).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logbroker/logbroker/storage"
)

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// consoleLine returns a typical device console line of about 100 bytes,
// as a JSON string.
func consoleLine(rng *rand.Rand, i int) []byte {
	var s string
	switch rng.IntN(6) {
	case 0:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] mgos_wifi.c:%d WiFi STA: connected, RSSI -%d, IP 192.168.1.%d", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 100+rng.IntN(400), 40+rng.IntN(50), rng.IntN(255))
	case 1:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] main.c:%d tick %d uptime %d.%02d heap free %d min %d", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 10+rng.IntN(200), i, rng.IntN(100000), rng.IntN(100), 20000+rng.IntN(30000), 15000+rng.IntN(5000))
	case 2:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] mgos_mqtt_conn.c:%d MQTT0 pub -> %d devices/dev%d/state (%d): {\"on\":%t}", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 100+rng.IntN(700), rng.IntN(65536), rng.IntN(1000), 10+rng.IntN(90), rng.IntN(2) == 0)
	case 3:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] sensor.c:%d temp %d.%d C humidity %d.%d %% pressure %d hPa", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 10+rng.IntN(300), 15+rng.IntN(15), rng.IntN(10), 30+rng.IntN(50), rng.IntN(10), 990+rng.IntN(40))
	case 4:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] mgos_http_server.c:%d 0x3ffc%04x HTTP GET /rpc/Sys.GetInfo 200 %d bytes", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 100+rng.IntN(300), rng.IntN(65536), 200+rng.IntN(800))
	default:
		s = fmt.Sprintf("[Nov 25 20:%02d:%02d.%03d] ota.c:%d OTA progress %d%% (%d of %d bytes) from https://fw.example.com/v1.%d", rng.IntN(60), rng.IntN(60), rng.IntN(1000), 10+rng.IntN(300), rng.IntN(101), rng.IntN(1<<20), 1<<20, rng.IntN(30))
	}
	m, _ := json.Marshal(s)
	return m
}

// fill appends n records made by rec through AppendAsync from one
// goroutine (so they go in large group commits), and waits for all.
func fill(b *testing.B, s *storage.Store, n int, rec func(i int) storage.Record) {
	b.Helper()
	var wg sync.WaitGroup
	var failed atomic.Value
	wg.Add(n)
	for i := 0; i < n; i++ {
		s.AppendAsync(rec(i), func(_ storage.Entry, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("fill: %v", err)
	}
}

// BenchmarkAppendSynced measures synced appends (each returns once its
// entry is fsynced) with 1, 8, 64 and 256 goroutines appending at once,
// ~100-byte messages, on a TempDir (on-disk, so fsync costs what it costs).
// Store is our Append (group commit: one fsync per drained queue);
// PebbleSet is the reference of issue 5: the same number of goroutines each
// calling Pebble's own db.Set(key, value, pebble.Sync) on a fresh Pebble DB
// (Pebble's commit pipeline groups concurrent synced writes too).
// StoreListed is Store with every stream listed once before (so the tail
// cache holds them, and each append copies its msg into it). ns/op is
// per entry, across all goroutines; entries/sync is how many entries one
// fsync carried on average.
func BenchmarkAppendSynced(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	msgs := make([][]byte, 1024)
	for i := range msgs {
		msgs[i] = consoleLine(rng, i)
	}
	for _, n := range []int{1, 8, 64, 256} {
		for _, listed := range []bool{false, true} {
			name := "Store"
			if listed {
				name = "StoreListed"
			}
			b.Run(fmt.Sprintf("appenders=%d/%s", n, name), func(b *testing.B) {
				benchAppendSynced(b, n, msgs, listed)
			})
		}
		b.Run(fmt.Sprintf("appenders=%d/PebbleSet", n), func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}, FormatMajorVersion: pebble.FormatValueSeparation})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			runParallel(b, n, func(g int) error {
				src := fmt.Sprint("device_", g%16)
				key := make([]byte, 0, 64)
				val := make([]byte, 0, 256)
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					// The same key and value shape as the store's entries.
					key = append(key[:0], 'e')
					key = append(key, src...)
					key = append(key, 0)
					key = append(key, "console\x00"...)
					key = binary.BigEndian.AppendUint64(key, uint64(i))
					val = binary.AppendUvarint(val[:0], uint64(1764080000000+i))
					val = append(val, msgs[i%int64(len(msgs))]...)
					if err := db.Set(key, val, pebble.Sync); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// benchAppendSynced is BenchmarkAppendSynced's Store case: n goroutines
// appending to the console streams of 16 sources, listed first if listed.
func benchAppendSynced(b *testing.B, n int, msgs [][]byte, listed bool) {
	s, err := storage.Open(b.TempDir(), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if listed {
		for g := 0; g < 16; g++ {
			if _, err := s.List(ctx, storage.Query{Src: fmt.Sprint("device_", g), Stream: "console", Last: 100}); err != nil {
				b.Fatal(err)
			}
		}
	}
	before := s.Stats()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	runParallel(b, n, func(g int) error {
		src := fmt.Sprint("device_", g%16)
		for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
			if _, err := s.Append(ctx, storage.Record{Src: src, Stream: "console", Timestamp: 1764080000000 + i, Msg: msgs[i%int64(len(msgs))]}); err != nil {
				return err
			}
		}
		return nil
	})
	b.StopTimer()
	st := s.Stats()
	if syncs := st.Syncs - before.Syncs; syncs > 0 {
		b.ReportMetric(float64(st.Entries-before.Entries)/float64(syncs), "entries/sync")
	}
}

// BenchmarkAppendVsPebbleSet is BenchmarkAppendSynced made robust to a
// machine whose load drifts: it alternates rounds of our synced Append and
// of direct synced db.Set (each round 50 ops per goroutine, n goroutines,
// the order of the pair flipping every round) until each side has done b.N
// entries, so both see the same conditions. Metrics: store-ns/entry and
// set-ns/entry (wall time per entry of each side), and store-speedup =
// set-ns/store-ns (issue 5 target 2: >= 1 at 64 and 256 appenders).
func BenchmarkAppendVsPebbleSet(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	msgs := make([][]byte, 1024)
	for i := range msgs {
		msgs[i] = consoleLine(rng, i)
	}
	for _, n := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			s, err := storage.Open(b.TempDir(), storage.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}, FormatMajorVersion: pebble.FormatValueSeparation})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var seq atomic.Int64
			storeRound := func(ops int64) {
				var next atomic.Int64
				runParallel(b, n, func(g int) error {
					ctx := context.Background()
					src := fmt.Sprint("device_", g%16)
					for next.Add(1) <= ops {
						i := seq.Add(1)
						if _, err := s.Append(ctx, storage.Record{Src: src, Stream: "console", Timestamp: 1764080000000 + i, Msg: msgs[i%int64(len(msgs))]}); err != nil {
							return err
						}
					}
					return nil
				})
			}
			setRound := func(ops int64) {
				var next atomic.Int64
				runParallel(b, n, func(g int) error {
					src := fmt.Sprint("device_", g%16)
					key := make([]byte, 0, 64)
					val := make([]byte, 0, 256)
					for next.Add(1) <= ops {
						i := seq.Add(1)
						key = append(key[:0], 'e')
						key = append(key, src...)
						key = append(key, 0)
						key = append(key, "console\x00"...)
						key = binary.BigEndian.AppendUint64(key, uint64(i))
						val = binary.AppendUvarint(val[:0], uint64(1764080000000+i))
						val = append(val, msgs[i%int64(len(msgs))]...)
						if err := db.Set(key, val, pebble.Sync); err != nil {
							return err
						}
					}
					return nil
				})
			}
			round := int64(50 * n)
			var storeTime, setTime time.Duration
			b.ResetTimer()
			for done, k := int64(0), 0; done < int64(b.N); k++ {
				ops := min(round, int64(b.N)-done)
				for j := 0; j < 2; j++ {
					t0 := time.Now()
					if (j+k)%2 == 0 {
						storeRound(ops)
						storeTime += time.Since(t0)
					} else {
						setRound(ops)
						setTime += time.Since(t0)
					}
				}
				done += ops
			}
			b.StopTimer()
			storeNs := float64(storeTime.Nanoseconds()) / float64(b.N)
			setNs := float64(setTime.Nanoseconds()) / float64(b.N)
			b.ReportMetric(storeNs, "store-ns/entry")
			b.ReportMetric(setNs, "set-ns/entry")
			b.ReportMetric(setNs/storeNs, "store-speedup")
		})
	}
}

// runParallel runs fn(g) on n goroutines and waits for them.
func runParallel(b *testing.B, n int, fn func(g int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(g); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkList measures List on one source holding LOGBROKER_BENCH_ENTRIES
// entries spread round-robin over 10 streams (on disk, after the fill; the
// data is in the OS cache), with the tail cache on (its default size) and
// off, side by side: the store is filled once, then reopened for each
// sub-benchmark (so the cache starts empty and is seeded by the first
// List, as after a restart); cache=shared is ListShared with the cache on
// (no copy of the msgs it serves), for the one-stream tails. ns/op is per
// List call; p99-ns is the 99th percentile of the calls' latencies; hit% is
// the share of the calls the cache served.
//   - Last100OneStream: the final 100 of one stream (tail of a console).
//   - Last100OneStreamParallel: the same from GOMAXPROCS goroutines at once.
//   - Last100AllStreams: the final 100 of all streams merged.
//   - After100AllStreams: 100 entries of all streams merged, forward from a
//     random position (paging with after).
//   - After100OneStream: 100 entries of one stream from a random position.
func BenchmarkList(b *testing.B) {
	entries := envInt(b, "LOGBROKER_BENCH_ENTRIES", 100000)
	dir := b.TempDir()
	s, err := storage.Open(dir, storage.Options{TailCacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	fill(b, s, entries, func(i int) storage.Record {
		return storage.Record{Src: "device_1", Stream: fmt.Sprint("s", i%10), Timestamp: 1764080000000 + int64(i), Msg: consoleLine(rng, i)}
	})
	ctx := context.Background()
	head, err := s.Head(ctx, "device_1")
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		parallel bool
		q        func(r *rand.Rand) storage.Query
	}{
		{"Last100OneStream", false, func(*rand.Rand) storage.Query {
			return storage.Query{Src: "device_1", Stream: "s3", Last: 100}
		}},
		{"Last100OneStreamParallel", true, func(*rand.Rand) storage.Query {
			return storage.Query{Src: "device_1", Stream: "s3", Last: 100}
		}},
		{"Last100AllStreams", false, func(*rand.Rand) storage.Query {
			return storage.Query{Src: "device_1", Last: 100}
		}},
		{"After100AllStreams", false, func(r *rand.Rand) storage.Query {
			return storage.Query{Src: "device_1", After: r.Uint64N(head - 1000), Last: -1, Limit: 100}
		}},
		{"After100OneStream", false, func(r *rand.Rand) storage.Query {
			return storage.Query{Src: "device_1", Stream: "s3", After: r.Uint64N(head - 1000), Last: -1, Limit: 100}
		}},
	} {
		for _, cache := range []struct {
			name   string
			bytes  int64
			shared bool
		}{{"cache=on", 0, false}, {"cache=off", -1, false}, {"cache=shared", 0, true}} {
			if cache.shared && !strings.HasPrefix(c.name, "Last100OneStream") {
				continue
			}
			b.Run(c.name+"/"+cache.name, func(b *testing.B) {
				s, err := storage.Open(dir, storage.Options{TailCacheBytes: cache.bytes})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				list := func(q storage.Query) error {
					call := s.List
					if cache.shared {
						call = s.ListShared
					}
					es, err := call(ctx, q)
					if err == nil && len(es) != 100 {
						err = fmt.Errorf("list %+v: %d entries, want 100", q, len(es))
					}
					return err
				}
				before := s.Stats()
				var lat []time.Duration
				b.ReportAllocs()
				b.ResetTimer()
				if c.parallel {
					var seed atomic.Uint64
					var mu sync.Mutex
					b.RunParallel(func(pb *testing.PB) {
						r := rand.New(rand.NewPCG(3, seed.Add(1)))
						mine := make([]time.Duration, 0, 1024)
						for pb.Next() {
							t0 := time.Now()
							err := list(c.q(r))
							mine = append(mine, time.Since(t0))
							if err != nil {
								b.Error(err)
								return
							}
						}
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
					})
				} else {
					r := rand.New(rand.NewPCG(3, 3))
					lat = make([]time.Duration, 0, b.N)
					for i := 0; i < b.N; i++ {
						q := c.q(r)
						t0 := time.Now()
						err := list(q)
						lat = append(lat, time.Since(t0))
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				}
				after := s.Stats()
				b.ReportMetric(100*float64(after.TailHits-before.TailHits)/float64(b.N), "hit%")
			})
		}
	}
}

// BenchmarkDelete measures Delete (durable: one DeleteRange, synced) of a
// stream holding entries=N entries, on disk, next to another stream of N
// entries. The stream is refilled and the store compacted, untimed, before
// each Delete. Slow to set up: run it with a fixed count, e.g.
// -benchtime=50x.
func BenchmarkDelete(b *testing.B) {
	big := envInt(b, "LOGBROKER_BENCH_DELETE", 10000)
	for _, n := range []int{10, big} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			s, err := storage.Open(b.TempDir(), storage.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rng := rand.New(rand.NewPCG(4, 4))
			msgs := make([][]byte, 256)
			for i := range msgs {
				msgs[i] = consoleLine(rng, i)
			}
			// Another stream stays, as on a real device.
			fill(b, s, n, func(i int) storage.Record {
				return storage.Record{Src: "device_1", Stream: "other", Msg: msgs[i%len(msgs)]}
			})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fill(b, s, n, func(i int) storage.Record {
					return storage.Record{Src: "device_1", Stream: "console", Msg: msgs[i%len(msgs)]}
				})
				// Settle the store: else the timed Delete also waits for
				// the memtable flushes the refill caused (a write stall
				// of tens of ms at 100000 entries, whatever the write).
				if err := storage.CompactAll(s); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Delete(ctx, "device_1", "console"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiskSize measures the bytes on disk of LOGBROKER_BENCH_LINES
// typical ~100-byte console lines (10 devices, stream "console") after a
// full compaction, against the bytes of the same entries as JSON entry
// objects (PROTOCOL §4). Target of issue 5: disk/json <= 0.6. ns/op is the
// time to append (in large group commits) and compact them all.
func BenchmarkDiskSize(b *testing.B) {
	lines := envInt(b, "LOGBROKER_BENCH_LINES", 1000000)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		s, err := storage.Open(dir, storage.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(5, 5))
		var jsonBytes int64
		var mu sync.Mutex
		var wg sync.WaitGroup
		var failed atomic.Value
		wg.Add(lines)
		for j := 0; j < lines; j++ {
			rec := storage.Record{Src: fmt.Sprint("device_", j%10), Stream: "console", Timestamp: 1764080000000 + int64(j)*37, Msg: consoleLine(rng, j)}
			s.AppendAsync(rec, func(e storage.Entry, err error) {
				defer wg.Done()
				if err != nil {
					failed.Store(err)
					return
				}
				obj, _ := json.Marshal(struct {
					ID        string          `json:"id"`
					Src       string          `json:"src"`
					Stream    string          `json:"stream"`
					Timestamp int64           `json:"timestamp"`
					Msg       json.RawMessage `json:"msg"`
				}{e.ID(), e.Src, e.Stream, e.Timestamp, e.Msg})
				mu.Lock()
				jsonBytes += int64(len(obj))
				mu.Unlock()
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		if err := storage.CompactAll(s); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		var disk int64
		err = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err == nil {
				disk += fi.Size()
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(disk), "disk-bytes")
		b.ReportMetric(float64(jsonBytes), "json-bytes")
		b.ReportMetric(float64(disk)/float64(jsonBytes), "disk/json")
	}
}

// BenchmarkAppendDedup measures what de-duplication costs an append: two
// stores, Options.DedupWindow 10 minutes and 0 (off), fed alternately in
// rounds of 50 appends per goroutine (the order flipping every round) until
// each has done b.N, every record with its own Dedup key. Metrics:
// on-ns/entry and off-ns/entry (wall time per entry of each side), and
// on-speed = off-ns/on-ns (issue 12: >= 0.95).
func BenchmarkAppendDedup(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	msgs := make([][]byte, 1024)
	for i := range msgs {
		msgs[i] = consoleLine(rng, i)
	}
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			var stores [2]*storage.Store
			for i, w := range []time.Duration{10 * time.Minute, 0} {
				s, err := storage.Open(b.TempDir(), storage.Options{DedupWindow: w})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				stores[i] = s
			}
			var seq atomic.Int64
			round := func(s *storage.Store, ops int64) {
				var next atomic.Int64
				runParallel(b, n, func(g int) error {
					ctx := context.Background()
					src := fmt.Sprint("device_", g%16)
					for next.Add(1) <= ops {
						i := seq.Add(1)
						var k storage.DedupKey
						binary.BigEndian.PutUint64(k[:], uint64(i)*0x9e3779b97f4a7c15)
						binary.BigEndian.PutUint64(k[8:], uint64(i))
						if _, err := s.Append(ctx, storage.Record{Src: src, Stream: "console", Timestamp: 1764080000000 + i, Msg: msgs[i%int64(len(msgs))], Dedup: k}); err != nil {
							return err
						}
					}
					return nil
				})
			}
			var times [2]time.Duration
			b.ResetTimer()
			for done, k := int64(0), 0; done < int64(b.N); k++ {
				ops := min(int64(50*n), int64(b.N)-done)
				for j := 0; j < 2; j++ {
					side := (j + k) % 2
					t0 := time.Now()
					round(stores[side], ops)
					times[side] += time.Since(t0)
				}
				done += ops
			}
			b.StopTimer()
			on := float64(times[0].Nanoseconds()) / float64(b.N)
			off := float64(times[1].Nanoseconds()) / float64(b.N)
			b.ReportMetric(on, "on-ns/entry")
			b.ReportMetric(off, "off-ns/entry")
			b.ReportMetric(off/on, "on-speed")
		})
	}
}
