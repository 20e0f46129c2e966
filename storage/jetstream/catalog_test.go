package jetstream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbroker/logbroker/rpc"
	"github.com/logbroker/logbroker/storage"
)

// Store serves Log.Sources and Log.Streams.
var _ rpc.Catalog = (*Store)(nil)

func TestStore_Catalog(t *testing.T) {
	for _, parts := range []int{1, 3} {
		t.Run(fmt.Sprintf("Partitions%d", parts), func(t *testing.T) {
			o := freshOptions()
			o.Partitions = parts
			s, err := Open(testContext(t, 30*time.Second), shared.Connect(parts%3), o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			testCatalog(t, s)
		})
	}
}

func testCatalog(t *testing.T, s *Store) {
	ctx := testContext(t, 30*time.Second)
	add := func(src, stream string, ts int64) storage.Entry {
		t.Helper()
		e, err := s.Append(ctx, storage.Record{Src: src, Stream: stream, Timestamp: ts, Msg: []byte(`"m"`)})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	sources := func(q storage.SourceQuery) []storage.SourceInfo {
		t.Helper()
		got, err := s.Sources(ctx, q)
		if err != nil {
			t.Fatalf("Sources(%+v): %v", q, err)
		}
		return got
	}
	streams := func(src string) []storage.StreamInfo {
		t.Helper()
		got, err := s.Streams(ctx, src)
		if err != nil {
			t.Fatalf("Streams(%q): %v", src, err)
		}
		return got
	}

	t.Run("EmptyStore", func(t *testing.T) {
		if got := sources(storage.SourceQuery{}); len(got) != 0 {
			t.Errorf("Sources of an empty store: %+v", got)
		}
		if got := streams("nobody"); len(got) != 0 {
			t.Errorf("Streams of an unknown source: %+v", got)
		}
	})

	// dev.a: console x3, "a b" x1; dev.b: console x1, then deleted;
	// dev/c: x.y x2; other: one entry.
	add("dev.a", "console", 1)
	add("dev.a", "console", 2)
	a3 := add("dev.a", "a b", 3)
	a4 := add("dev.a", "console", 4)
	b1 := add("dev.b", "console", 5)
	c1 := add("dev/c", "x.y", 6)
	c2 := add("dev/c", "x.y", 7)
	o1 := add("other", "console", 8)
	if err := s.Delete(ctx, "dev.b", "console"); err != nil {
		t.Fatal(err)
	}

	t.Run("Sources", func(t *testing.T) {
		want := []storage.SourceInfo{
			{Src: "dev.a", LastSeq: a4.Seq, LastTimestamp: 4},
			{Src: "dev.b", LastSeq: b1.Seq, Empty: true},
			{Src: "dev/c", LastSeq: c2.Seq, LastTimestamp: 7},
			{Src: "other", LastSeq: o1.Seq, LastTimestamp: 8},
		}
		cases := []struct {
			name string
			q    storage.SourceQuery
			want []storage.SourceInfo
		}{
			{"All", storage.SourceQuery{}, want},
			{"Limit", storage.SourceQuery{Limit: 2}, want[:2]},
			{"After", storage.SourceQuery{After: "dev.b"}, want[2:]},
			{"AfterAndLimit", storage.SourceQuery{After: "dev.a", Limit: 1}, want[1:2]},
			{"Prefix", storage.SourceQuery{Prefix: "dev"}, want[:3]},
			{"PrefixAndAfter", storage.SourceQuery{Prefix: "dev", After: "dev.a"}, want[1:3]},
			{"PrefixNone", storage.SourceQuery{Prefix: "zzz"}, nil},
			{"AfterAll", storage.SourceQuery{After: "zzz"}, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if got := sources(c.q); !reflect.DeepEqual(got, c.want) {
					t.Errorf("Sources(%+v)\n got %+v\nwant %+v", c.q, got, c.want)
				}
			})
		}
	})

	t.Run("Streams", func(t *testing.T) {
		cases := []struct {
			src  string
			want []storage.StreamInfo
		}{
			{"dev.a", []storage.StreamInfo{
				{Stream: "a b", Count: 1, LastSeq: a3.Seq, LastTimestamp: 3},
				{Stream: "console", Count: 3, LastSeq: a4.Seq, LastTimestamp: 4},
			}},
			{"dev.b", nil},
			{"dev/c", []storage.StreamInfo{{Stream: "x.y", Count: 2, LastSeq: c2.Seq, LastTimestamp: 7}}},
			{"dev", nil},
		}
		for _, c := range cases {
			t.Run(c.src, func(t *testing.T) {
				if got := streams(c.src); !reflect.DeepEqual(got, c.want) {
					t.Errorf("Streams(%q)\n got %+v\nwant %+v", c.src, got, c.want)
				}
			})
		}
		if c1.Seq >= c2.Seq {
			t.Fatalf("ids not increasing: %d then %d", c1.Seq, c2.Seq)
		}
	})

	t.Run("AppendAfterDelete", func(t *testing.T) {
		b2 := add("dev.b", "console", 9)
		wantSrc := []storage.SourceInfo{{Src: "dev.b", LastSeq: b2.Seq, LastTimestamp: 9}}
		if got := sources(storage.SourceQuery{After: "dev.a", Limit: 1}); !reflect.DeepEqual(got, wantSrc) {
			t.Errorf("Sources after a new entry of a deleted stream\n got %+v\nwant %+v", got, wantSrc)
		}
		// The tombstone is not counted.
		want := []storage.StreamInfo{{Stream: "console", Count: 1, LastSeq: b2.Seq, LastTimestamp: 9}}
		if got := streams("dev.b"); !reflect.DeepEqual(got, want) {
			t.Errorf("Streams(dev.b)\n got %+v\nwant %+v", got, want)
		}
	})

	t.Run("InvalidSource", func(t *testing.T) {
		if _, err := s.Streams(ctx, ""); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Streams(\"\"): %v, want ErrInvalid", err)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		o := freshOptions()
		c, err := Open(ctx, shared.Connect(0), o)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if _, err := c.Sources(context.Background(), storage.SourceQuery{}); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Sources after Close: %v, want ErrClosed", err)
		}
		if _, err := c.Streams(context.Background(), "dev.a"); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Streams after Close: %v, want ErrClosed", err)
		}
	})
}

// BenchmarkCatalog measures Sources (a page of 100) and Streams (one
// source of 10 streams) on a store of 1,000 sources: Sources reads every
// entry subject of the partition, then the last message of each stream of
// the sources it returns.
func BenchmarkCatalog(b *testing.B) {
	s, err := Open(context.Background(), shared.Connect(0), freshOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for i := range 1000 {
		for j := range 10 {
			if i%100 != 0 && j > 0 {
				break // 10 streams for every 100th source, 1 for the rest
			}
			wg.Add(1)
			s.AppendAsync(storage.Record{Src: fmt.Sprintf("dev%04d", i), Stream: fmt.Sprint("s", j), Timestamp: 1, Msg: []byte(`"m"`)},
				func(_ storage.Entry, err error) {
					if err != nil {
						failed.Store(&err)
					}
					wg.Done()
				})
		}
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.Run("Sources100", func(b *testing.B) {
		for b.Loop() {
			if got, err := s.Sources(ctx, storage.SourceQuery{After: "dev0500", Limit: 100}); err != nil || len(got) != 100 {
				b.Fatalf("Sources: %d, %v", len(got), err)
			}
		}
	})
	b.Run("Streams10", func(b *testing.B) {
		for b.Loop() {
			if got, err := s.Streams(ctx, "dev0100"); err != nil || len(got) != 10 {
				b.Fatalf("Streams: %d, %v", len(got), err)
			}
		}
	})
}
