package jetstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// openStore opens a store with opts on a connection that prefers server
// first of c; t.Cleanup closes both.
func openStore(t *testing.T, c *jstest.Cluster, first int, opts Options) *Store {
	t.Helper()
	nc := c.Connect(first)
	s, err := Open(testContext(t, 30*time.Second), nc, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// listAll lists every entry of src, failing t on error.
func listAll(t *testing.T, s *Store, src string) []storage.Entry {
	t.Helper()
	es, err := s.List(testContext(t, 20*time.Second), storage.Query{Src: src, Last: -1})
	if err != nil {
		t.Fatalf("list %q: %v", src, err)
	}
	return es
}

// TestStore_LeaderRestart kills the stream leader during a stream of
// appends from two goroutines, restarts it, and checks that every
// acknowledged entry is stored exactly once, ids strictly increasing, and
// that the subscriber of another node got each exactly once.
func TestStore_LeaderRestart(t *testing.T) {
	c := jstest.NewCluster(t, 3)
	opts := freshOptions()
	opts.AckWait = 500 * time.Millisecond
	writer := openStore(t, c, 0, opts)
	reader := openStore(t, c, 1, opts)

	var mu sync.Mutex
	delivered := map[uint64]int{}
	cancel := reader.Subscribe(func(g []storage.Entry) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range g {
			delivered[e.Seq]++
		}
	})
	defer cancel()

	type acked struct {
		seq uint64
		msg string
	}
	var (
		amu     sync.Mutex
		ack     []acked
		failed  []string
		stop    = make(chan struct{})
		writers sync.WaitGroup
	)
	count := func() int {
		amu.Lock()
		defer amu.Unlock()
		return len(ack)
	}
	for g := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf(`"g%d-%d"`, g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				e, err := writer.Append(ctx, storage.Record{Src: "dev", Stream: fmt.Sprint("s", g), Timestamp: int64(i), Msg: []byte(msg)})
				cancel()
				amu.Lock()
				if err != nil {
					failed = append(failed, msg)
					t.Logf("append %s: %v", msg, err)
				} else {
					ack = append(ack, acked{e.Seq, msg})
				}
				amu.Unlock()
			}
		}()
	}
	stream := opts.Name + "_0"
	await.Until(t, 20*time.Second, "first appends", func() bool { return count() >= 50 })
	leader := c.StreamLeader(stream)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	before := count()
	c.Stop(leader)
	t.Logf("stopped leader n%d after %d appends", leader, before)
	await.Until(t, 30*time.Second, "appends under a new leader", func() bool { return count() >= before+50 })
	c.Start(leader)
	t.Logf("restarted n%d after %d appends", leader, count())
	mid := count()
	await.Until(t, 30*time.Second, "appends after the restart", func() bool { return count() >= mid+50 })
	close(stop)
	writers.Wait()

	amu.Lock()
	defer amu.Unlock()
	if len(failed) > 0 {
		t.Errorf("%d appends failed (first %s); the store should ride out a leader change", len(failed), failed[0])
	}
	// Read through the restarted server: its replica may still be catching
	// up, which the fence must hide.
	check := openStore(t, c, leader, opts)
	got := listAll(t, check, "dev")
	seen := map[string]uint64{}
	var prev uint64
	for _, e := range got {
		if e.Seq <= prev {
			t.Errorf("ids not strictly increasing: %d after %d", e.Seq, prev)
		}
		prev = e.Seq
		if s, dup := seen[string(e.Msg)]; dup {
			t.Errorf("message %s stored twice: ids %d and %d", e.Msg, s, e.Seq)
		}
		seen[string(e.Msg)] = e.Seq
	}
	for _, a := range ack {
		if seq, ok := seen[a.msg]; !ok || seq != a.seq {
			t.Errorf("acknowledged %s as %d; listed as %d (found %v)", a.msg, a.seq, seq, ok)
		}
	}
	if len(got) < len(ack) || len(got) > len(ack)+len(failed) {
		t.Errorf("listed %d entries for %d acknowledged and %d failed appends", len(got), len(ack), len(failed))
	}
	await.Until(t, 20*time.Second, "every entry delivered to the other node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) >= len(got)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range got {
		if n := delivered[e.Seq]; n != 1 {
			t.Errorf("entry %d delivered %d times to the other node's subscriber", e.Seq, n)
		}
	}
	t.Logf("%d appends acknowledged, %d failed, %d listed", len(ack), len(failed), len(got))
}

// TestStore_ResendStoresOnce makes every append overdue at once (AckWait
// of a millisecond, acknowledgements held until the resend loop has
// published some again): the duplicate window must store each once, under
// the id first acknowledged.
func TestStore_ResendStoresOnce(t *testing.T) {
	opts := freshOptions()
	opts.AckWait = time.Millisecond
	s := openStore(t, shared, 0, opts)
	// Without holding the acknowledgements, a quick server answered all
	// of them before the loop's first tick, and nothing was resent.
	gate := make(chan struct{})
	s.pub.ackGate.Store(&gate)
	const n = 300
	type res struct {
		e   storage.Entry
		err error
	}
	results := make(chan res, n)
	for i := range n {
		s.AppendAsync(storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(i))}, func(e storage.Entry, err error) {
			results <- res{e, err}
		})
	}
	await.Until(t, 20*time.Second, "appends published again", func() bool { return s.pub.resent.Load() >= n })
	close(gate)
	s.pub.ackGate.Store(nil)
	byMsg := map[string]uint64{}
	var prev uint64
	for range n {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("append: %v", r.err)
			}
			if r.e.Seq <= prev {
				t.Errorf("done callbacks out of order: id %d after %d", r.e.Seq, prev)
			}
			prev = r.e.Seq
			byMsg[string(r.e.Msg)] = r.e.Seq
		case <-time.After(20 * time.Second):
			t.Fatal("timed out waiting for acknowledgements")
		}
	}
	if s.pub.resent.Load() == 0 {
		t.Fatal("no append was published again: the test did not exercise the duplicate window")
	}
	t.Logf("%d publishes sent again", s.pub.resent.Load())
	got := listAll(t, s, "dev")
	if len(got) != n {
		t.Errorf("listed %d entries for %d appends", len(got), n)
	}
	for i, e := range got {
		if want := fmt.Sprint(i); string(e.Msg) != want || byMsg[want] != e.Seq {
			t.Fatalf("entry %d is %s (id %d), want %s as acknowledged (id %d)", i, e.Msg, e.Seq, want, byMsg[want])
		}
	}
}

// TestStore_Nodes runs two stores on different servers, as two logbroker
// nodes: what one appends, the other lists at once and is told of once.
func TestStore_Nodes(t *testing.T) {
	opts := freshOptions()
	a := openStore(t, shared, 0, opts)
	b := openStore(t, shared, 2, opts)
	got := make(chan storage.Entry, 100)
	defer b.Subscribe(func(g []storage.Entry) {
		for _, e := range g {
			got <- e
		}
	})()
	for i := range 20 {
		e, err := a.Append(testContext(t, 20*time.Second), storage.Record{Src: "dev", Stream: "console", Timestamp: int64(i), Msg: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		// Read your writes on the other node, at once.
		es, err := b.List(testContext(t, 20*time.Second), storage.Query{Src: "dev", After: e.Seq - 1, Last: -1})
		if err != nil || len(es) != 1 || es[0].Seq != e.Seq {
			t.Fatalf("node b lists %v (err %v) right after node a stored %d", es, err, e.Seq)
		}
		select {
		case d := <-got:
			if d.Seq != e.Seq || string(d.Msg) != fmt.Sprint(i) {
				t.Fatalf("node b was told of %d %s, want %d %d", d.Seq, d.Msg, e.Seq, i)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("node b not told of entry %d", e.Seq)
		}
	}
	select {
	case d := <-got:
		t.Errorf("entry %d delivered twice", d.Seq)
	default:
	}
}

// TestStore_DeleteInterleaved deletes a stream whose entries interleave
// with other streams and sources: it must be gone whole, the others
// untouched, Head unchanged.
func TestStore_DeleteInterleaved(t *testing.T) {
	s := openStore(t, shared, 1, freshOptions())
	ctx := testContext(t, 30*time.Second)
	var keep []storage.Entry
	var last uint64
	for i := range 60 {
		src, stream := "dev", "big"
		switch i % 4 {
		case 1:
			stream = "small"
		case 3:
			src = "other"
		}
		e, err := s.Append(ctx, storage.Record{Src: src, Stream: stream, Msg: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		if src == "dev" {
			last = e.Seq
		}
		if stream == "small" {
			keep = append(keep, e)
		}
	}
	if err := s.Delete(ctx, "dev", "big"); err != nil {
		t.Fatal(err)
	}
	got := listAll(t, s, "dev")
	if len(got) != len(keep) {
		t.Fatalf("after delete, dev lists %d entries, want the %d of stream small", len(got), len(keep))
	}
	for i := range got {
		if got[i].Seq != keep[i].Seq || got[i].Stream != "small" {
			t.Errorf("entry %d: %d %q, want %d small", i, got[i].Seq, got[i].Stream, keep[i].Seq)
		}
	}
	if n := len(listAll(t, s, "other")); n != 15 {
		t.Errorf("other lists %d entries, want 15", n)
	}
	if h, err := s.Head(ctx, "dev"); err != nil || h != last {
		t.Errorf("head of dev after delete: %d (err %v), want %d", h, err, last)
	}
}

// TestOpen_PartitionMismatch refuses streams made for another count.
func TestOpen_PartitionMismatch(t *testing.T) {
	opts := freshOptions()
	openStore(t, shared, 0, opts)
	opts.Partitions = 2
	_, err := Open(testContext(t, 20*time.Second), shared.Connect(0), opts)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("open with 2 partitions over a 1-partition store: %v, want ErrConfig", err)
	}
}

// TestStore_Retention maps MaxMsgs to the stream: the oldest go first, and
// ids stay as they were.
func TestStore_Retention(t *testing.T) {
	opts := freshOptions()
	opts.MaxMsgs = 5
	s := openStore(t, shared, 0, opts)
	ctx := testContext(t, 20*time.Second)
	var es []storage.Entry
	for i := range 12 {
		e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	got := listAll(t, s, "dev")
	if len(got) != 5 {
		t.Fatalf("listed %d entries, want the last 5", len(got))
	}
	for i, e := range got {
		if want := es[7+i]; e.Seq != want.Seq || string(e.Msg) != string(want.Msg) {
			t.Errorf("entry %d: %d %s, want %d %s", i, e.Seq, e.Msg, want.Seq, want.Msg)
		}
	}
}

// TestStore_LaggingReplica reads, right after each acknowledged append,
// through every server: a follower may not have applied the entry yet
// (JetStream acknowledges once a quorum stored it), and after a restart a
// follower serves direct gets before it has caught up fully. The fence
// must keep List and Head from missing what was acknowledged.
func TestStore_LaggingReplica(t *testing.T) {
	c := jstest.NewCluster(t, 3)
	opts := freshOptions()
	w := openStore(t, c, 0, opts)
	ctx := testContext(t, 60*time.Second)
	if _, err := w.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	stream := opts.Name + "_0"
	follower := (c.StreamLeader(stream) + 1) % 3
	c.Stop(follower)
	for i := 1; i <= 300; i++ {
		if _, err := w.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(follower)
	// Opening a store through the restarted server before it has rejoined
	// JetStream could stall past openStore's deadline (creating its
	// consumer); its stream replica still lags once it has rejoined.
	c.WaitReady()
	var readers []*Store
	for i := range 3 {
		readers = append(readers, openStore(t, c, i, opts))
	}
	misses := 0 // unfenced direct gets that missed an acknowledged entry
	for i := 301; i <= 500; i++ {
		e, err := w.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		for n, r := range readers {
			if m, err := r.directOne(ctx, r.parts[0], dgRequest{Seq: e.Seq}); err == nil && m == nil {
				misses++
			}
			got, err := r.List(ctx, storage.Query{Src: "dev", After: e.Seq - 1, Last: -1})
			if err != nil || len(got) != 1 || got[0].Seq != e.Seq {
				t.Fatalf("through n%d, entry %d acknowledged but List returned %v (err %v)", n, e.Seq, got, err)
			}
			if h := mustHeadOf(t, r, "dev"); h != e.Seq {
				t.Fatalf("through n%d, head %d after %d was acknowledged", n, h, e.Seq)
			}
		}
	}
	t.Logf("unfenced direct gets missed an acknowledged entry %d times of 600", misses)
	for n, r := range readers {
		if got := listAll(t, r, "dev"); len(got) != 501 {
			t.Errorf("through n%d: %d entries listed, want 501", n, len(got))
		}
	}
}
func mustHeadOf(t *testing.T, s *Store, src string) uint64 {
	t.Helper()
	h, err := s.Head(testContext(t, 20*time.Second), src)
	if err != nil {
		t.Fatalf("head %q: %v", src, err)
	}
	return h
}

// TestReader_FromLeader sets a fence no replica reaches, so read falls
// back to the leader after a few tries: it must return the same entries,
// tombstones left out.
func TestReader_FromLeader(t *testing.T) {
	s := openStore(t, shared, 0, freshOptions())
	ctx := testContext(t, 20*time.Second)
	for i := range 12 {
		if _, err := s.Append(ctx, storage.Record{Src: "dev", Stream: []string{"a", "b", "gone"}[i%3], Timestamp: int64(i), Msg: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "dev", "gone"); err != nil {
		t.Fatal(err)
	}
	want := listAll(t, s, "dev")
	if len(want) != 8 {
		t.Fatalf("listed %d entries, want 8", len(want))
	}
	p := s.parts[0]
	for _, limit := range []int{0, 3} {
		t.Run(fmt.Sprint("Limit", limit), func(t *testing.T) {
			r := reader{s: s, p: p, filter: p.sourceFilter("dev"), from: 1, fence: math.MaxUint64 - 1}
			got, err := r.read(ctx, 1, limit)
			if err != nil {
				t.Fatal(err)
			}
			w := want
			if limit > 0 {
				w = want[:limit]
			}
			if len(got) != len(w) {
				t.Fatalf("read %d entries from the leader, want %d", len(got), len(w))
			}
			for i := range got {
				if got[i].Seq != w[i].Seq || string(got[i].Msg) != string(w[i].Msg) || got[i].Timestamp != w[i].Timestamp || got[i].Stream != w[i].Stream {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], w[i])
				}
			}
		})
	}
}

// TestCheckSync asks the servers for their sync setting: a system account
// user learns that all three sync every write; an ordinary one cannot ask.
func TestCheckSync(t *testing.T) {
	t.Run("SystemUser", func(t *testing.T) {
		nc, err := nats.Connect(shared.URLs(), nats.UserInfo("sys", "sys"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		rep, err := CheckSync(testContext(t, 10*time.Second), nc, 2*time.Second)
		if err != nil || rep.Servers != 3 || len(rep.Unsynced) != 0 {
			t.Fatalf("report %+v (err %v), want 3 servers, none unsynced", rep, err)
		}
	})
	t.Run("OrdinaryUser", func(t *testing.T) {
		rep, err := CheckSync(testContext(t, 10*time.Second), shared.Connect(0), time.Second)
		if err != nil || rep.Servers != 0 {
			t.Fatalf("report %+v (err %v), want no server answering", rep, err)
		}
	})
}

// TestStore_RetentionPerStream maps MaxPerStream to the stream's limit per
// subject: each stream of a source keeps its newest.
func TestStore_RetentionPerStream(t *testing.T) {
	opts := freshOptions()
	opts.MaxPerStream = 3
	s := openStore(t, shared, 0, opts)
	ctx := testContext(t, 20*time.Second)
	for i := range 10 {
		if _, err := s.Append(ctx, storage.Record{Src: "dev", Stream: []string{"a", "b"}[i%2], Msg: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ stream, want string }{{"a", "4 6 8"}, {"b", "5 7 9"}} {
		es, err := s.List(ctx, storage.Query{Src: "dev", Stream: c.stream, Last: -1})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, string(e.Msg))
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("stream %s keeps %q, want %q", c.stream, g, c.want)
		}
	}
}
