package jetstream

import (
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// TestAwaitLeader checks what deliver relies on to keep Subscribe's
// promise (an entry is delivered once Head and List see it): leaderStored
// reports what the stream leader has stored, not less after a purge, and
// awaitLeader waits for an entry appended through another node and ends
// when the store closes.
func TestAwaitLeader(t *testing.T) {
	opts := freshOptions()
	s := openStore(t, shared, 0, opts)
	other := openStore(t, shared, 1, opts)
	ctx := testContext(t, 20*time.Second)
	p := s.parts[0]
	var es []storage.Entry
	for _, stream := range []string{"a", "b"} {
		e, err := other.Append(ctx, storage.Record{Src: "dev", Stream: stream, Msg: []byte(`"x"`)})
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	last := es[1].Seq
	if got, err := s.leaderStored(p, last); err != nil || got < last {
		t.Errorf("leaderStored(%d) = %d, %v: want at least %d", last, got, err, last)
	}
	if got, err := s.leaderStored(p, last+1); err != nil || got != last {
		t.Errorf("leaderStored(%d) = %d, %v: want %d, the leader's last", last+1, got, err, last)
	}
	// The last message removed (as the limits may): its sequence was stored.
	if err := s.purge(ctx, p, p.entrySubject("dev", "b"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.leaderStored(p, last); err != nil || got < last {
		t.Errorf("after the purge, leaderStored(%d) = %d, %v: want at least %d", last, got, err, last)
	}

	done := make(chan bool, 1)
	go func() { done <- s.awaitLeader(p, last+1) }()
	e, err := other.Append(ctx, storage.Record{Src: "dev", Stream: "a", Msg: []byte(`"y"`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-done:
		if !ok {
			t.Error("awaitLeader gave up while the store was open")
		}
		if got := p.stored.Load(); got < e.Seq {
			t.Errorf("after awaitLeader(%d), known stored up to %d, want at least %d", last+1, got, e.Seq)
		}
	case <-ctx.Done():
		t.Fatalf("awaitLeader(%d) still waits after entry %d was stored", last+1, e.Seq)
	}

	go func() { done <- s.awaitLeader(p, e.Seq+1000) }()
	s.Close()
	select {
	case ok := <-done:
		if ok {
			t.Error("awaitLeader of a sequence never stored returned true")
		}
	case <-ctx.Done():
		t.Fatal("awaitLeader still waits after Close")
	}
}
