package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/storetest"
)

// Store satisfies the conformance contract (and so rpc.LogStore, a subset).
var _ storetest.Store = (*Store)(nil)

// harness opens stores on the shared cluster: each fresh location is a new
// set of stream names, reopened by a new Store on a new connection.
func harness(opts Options) storetest.Harness {
	fresh := func(o Options) func() (storetest.Store, error) {
		f := freshOptions()
		o.Name, o.Subject = f.Name, f.Subject
		return func() (storetest.Store, error) {
			nc := shared.Connect(int(storeNo.Load() % 3))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return Open(ctx, nc, o)
		}
	}
	return storetest.Harness{
		Fresh: func(testing.TB) func() (storetest.Store, error) { return fresh(opts) },
		Dedup: func(_ testing.TB, window time.Duration) func() (storetest.Store, error) {
			o := opts
			o.DedupWindow = window
			if window > 0 {
				o.Duplicates = window
			}
			return fresh(o)
		},
	}
}

func TestStore_Conformance(t *testing.T) {
	t.Run("OnePartition", func(t *testing.T) { storetest.Run(t, harness(Options{})) })
	// Sources hashed over three streams.
	t.Run("ThreePartitions", func(t *testing.T) { storetest.Run(t, harness(Options{Partitions: 3})) })
}

func TestStore_Basics(t *testing.T) {
	nc := shared.Connect(0)
	s, err := Open(testContext(t, 30*time.Second), nc, freshOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Err(); err != nil {
		t.Errorf("Err of an open store: %v", err)
	}
	ctx := testContext(t, 20*time.Second)
	e, err := s.Append(ctx, storage.Record{Src: "dev.1", Stream: "a b", Timestamp: 7, Msg: []byte(`"x"`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, storage.Query{Src: "dev.1", Last: -1})
	if err != nil || len(got) != 1 || got[0].Seq != e.Seq || string(got[0].Msg) != `"x"` {
		t.Fatalf("list: %v %v", got, err)
	}
	if err := s.Delete(ctx, "dev.1", "a b"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 1 || st.Bytes != 3 || st.Deletes != 1 {
		t.Errorf("stats %+v, want 1 entry of 3 bytes, 1 delete", st)
	}
	s.Close()
	if err := s.Err(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Err after Close: %v, want ErrClosed", err)
	}
}
