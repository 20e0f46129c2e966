package jetstream

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// BenchmarkAppend measures acknowledged appends (stored on a quorum of the
// embedded 3-node cluster, each server syncing every write) from
// concurrent callers through one store: ns/op is per append.
func BenchmarkAppend(b *testing.B) {
	for _, callers := range []int{1, 16, 128} {
		b.Run(fmt.Sprint("Callers", callers), func(b *testing.B) {
			nc := shared.Connect(0)
			s, err := Open(context.Background(), nc, freshOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			msg := []byte(`"a log line of about sixty bytes, as a device would send"`)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + callers - 1) / callers
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if _, err := s.Append(context.Background(), storage.Record{Src: fmt.Sprint("dev", c%8), Stream: "console", Msg: msg}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkDeleteStall deletes a stream of size entries while another
// source appends one entry at a time, and reports the Delete's duration
// and the slowest of those appends: how long a purge holds the stream.
func BenchmarkDeleteStall(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		b.Run(fmt.Sprint("Entries", size), func(b *testing.B) {
			s, err := Open(context.Background(), shared.Connect(1), freshOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var deletes, worst, p50 time.Duration
			for range b.N {
				b.StopTimer()
				fill(b, s, "big", size)
				b.StartTimer()
				lat := make(chan []time.Duration, 1)
				stop := make(chan struct{})
				go func() {
					var ds []time.Duration
					for {
						select {
						case <-stop:
							lat <- ds
							return
						default:
						}
						t0 := time.Now()
						if _, err := s.Append(context.Background(), storage.Record{Src: "other", Stream: "a", Msg: []byte("1")}); err != nil {
							b.Error(err)
						}
						ds = append(ds, time.Since(t0))
					}
				}()
				t0 := time.Now()
				if err := s.Delete(context.Background(), "big", "s"); err != nil {
					b.Fatal(err)
				}
				deletes += time.Since(t0)
				close(stop)
				ds := <-lat
				slices.Sort(ds)
				if len(ds) > 0 {
					worst = max(worst, ds[len(ds)-1])
					p50 += ds[len(ds)/2]
				}
			}
			b.ReportMetric(float64(deletes.Milliseconds())/float64(b.N), "delete-ms")
			b.ReportMetric(float64(worst.Microseconds())/1000, "max-append-ms")
			b.ReportMetric(float64(p50.Microseconds())/1000/float64(b.N), "p50-append-ms")
		})
	}
}

// fill appends n entries to src/"s" with AppendAsync, and waits for them.
func fill(b *testing.B, s *Store, src string, n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		s.AppendAsync(storage.Record{Src: src, Stream: "s", Msg: []byte(fmt.Sprint(i))}, func(_ storage.Entry, err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
}

// BenchmarkList lists 100 entries of a source holding 50000 (one stream),
// from the start (After) and from the end (Last, which bisects), through a
// node whose nearest replica answers the direct gets.
func BenchmarkList(b *testing.B) {
	s, err := Open(context.Background(), shared.Connect(2), freshOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fill(b, s, "dev", 50000)
	for _, c := range []struct {
		name string
		q    storage.Query
	}{
		{"First100", storage.Query{Src: "dev", Last: -1, Limit: 100}},
		{"Last100", storage.Query{Src: "dev", Last: 100}},
		{"StreamLast100", storage.Query{Src: "dev", Stream: "s", Last: 100}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				es, err := s.List(context.Background(), c.q)
				if err != nil || len(es) != 100 {
					b.Fatalf("list: %d entries, %v", len(es), err)
				}
			}
		})
	}
}

// BenchmarkCrossNodeNotify measures, for entries appended one at a time
// through a store on one server, the time until a store on another server
// hands them to its subscriber (what wakes a follow on another node):
// p50 and p99 in ms.
func BenchmarkCrossNodeNotify(b *testing.B) {
	opts := freshOptions()
	a, err := Open(context.Background(), shared.Connect(0), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	r, err := Open(context.Background(), shared.Connect(2), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	got := make(chan time.Time, 1)
	defer r.Subscribe(func(g []storage.Entry) { got <- time.Now() })()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := a.Append(context.Background(), storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(i))}); err != nil {
			b.Fatal(err)
		}
		select {
		case t1 := <-got:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(20 * time.Second):
			b.Fatal("entry not delivered to the other store")
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
