package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/storetest"
)

var _ storetest.Store = (*storage.Store)(nil)

// harness runs the conformance suite on a Pebble store in fs (a fresh
// vfs.NewMem per test when fs is nil, else a fresh directory of fs), and
// after each test checks the raw keys the store left behind.
func harness(opts storage.Options, newFS func(t testing.TB) (vfs.FS, string)) storetest.Harness {
	fresh := func(t testing.TB, o storage.Options) func() (storetest.Store, error) {
		fs, dir := newFS(t)
		o.FS = fs
		t.Cleanup(func() { checkRaw(t, fs, dir) })
		return func() (storetest.Store, error) { return storage.Open(dir, o) }
	}
	return storetest.Harness{
		Fresh: func(t testing.TB) func() (storetest.Store, error) { return fresh(t, opts) },
		Dedup: func(t testing.TB, window time.Duration) func() (storetest.Store, error) {
			o := opts
			o.DedupWindow = window
			return fresh(t, o)
		},
	}
}

func memFS(testing.TB) (vfs.FS, string) { return vfs.NewMem(), "db" }

func diskFS(t testing.TB) (vfs.FS, string) { return vfs.Default, t.TempDir() }

func TestStore_Conformance(t *testing.T) {
	t.Run("Mem", func(t *testing.T) { storetest.Run(t, harness(storage.Options{}, memFS)) })
	// Batches of one or two ops: the committer splits every drain.
	t.Run("MemSmallBatches", func(t *testing.T) {
		storetest.Run(t, harness(storage.Options{MaxBatchBytes: 64}, memFS))
	})
	// The tail cache off, and so small that it evicts all the time.
	t.Run("MemNoTailCache", func(t *testing.T) {
		storetest.Run(t, harness(storage.Options{TailCacheBytes: -1}, memFS))
	})
	t.Run("MemTinyTailCache", func(t *testing.T) {
		storetest.Run(t, harness(storage.Options{TailCacheBytes: 4096}, memFS))
	})
	// On disk: real fsyncs, real file locks on reopen.
	t.Run("Disk", func(t *testing.T) { storetest.Run(t, harness(storage.Options{}, diskFS)) })
}

// rawStats is what checkRaw found.
type rawStats struct {
	entries int
	seqs    map[string]uint64 // the 'q' key of each source
	maxSeq  map[string]uint64 // the highest entry of each source
	marks   map[string]uint64 // the highest age mark of each source
	dedups  int               // dedup keys
}

// checkRaw opens the Pebble directory of a closed store and walks every
// key: the format marker is there, every key is of a known kind and
// decodes, and no entry of a source is above its 'q' sequence key.
func checkRaw(t testing.TB, fs vfs.FS, dir string) rawStats {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: true, Logger: quietLogger{}})
	if err != nil {
		t.Errorf("raw check: open %s: %v", dir, err)
		return rawStats{}
	}
	defer db.Close()
	st := rawStats{seqs: map[string]uint64{}, maxSeq: map[string]uint64{}, marks: map[string]uint64{}}
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatalf("raw check: %v", err)
	}
	defer it.Close()
	marker := false
	type blockKey struct {
		src string
		n   uint64
	}
	blocks := map[blockKey][2]int64{} // 'b' keys: every entry's timestamp must lie in its block's range
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			t.Errorf("raw check: value of %q: %v", k, err)
			continue
		}
		switch k[0] {
		case 'm':
			marker = true
			if string(k) != "m" || string(v) != "logbroker/2" {
				t.Errorf("raw check: format marker %q = %q", k, v)
			}
		case 'q':
			src := string(k[1:])
			if !okName(src) || len(v) != 8 {
				t.Errorf("raw check: bad sequence key %q = %x", k, v)
				continue
			}
			st.seqs[src] = binary.BigEndian.Uint64(v)
		case 't':
			i := bytes.IndexByte(k, 0)
			if i < 2 || len(k) != i+1+8 || len(v) != 8 || !okName(string(k[1:i])) {
				t.Errorf("raw check: bad age mark %q = %x", k, v)
				continue
			}
			st.marks[string(k[1:i])] = max(st.marks[string(k[1:i])], binary.BigEndian.Uint64(v))
		case 'b':
			i := bytes.IndexByte(k, 0)
			if i < 2 || len(k) != i+1+8 || len(v) != 16 || !okName(string(k[1:i])) {
				t.Errorf("raw check: bad block summary %q = %x", k, v)
				continue
			}
			lo, hi := int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
			if lo > hi {
				t.Errorf("raw check: block summary %q: range %d..%d", k, lo, hi)
			}
			blocks[blockKey{string(k[1:i]), binary.BigEndian.Uint64(k[i+1:])}] = [2]int64{lo, hi}
		case 'e':
			src, stream, seq, ok := splitEntryKey(k)
			if !ok {
				t.Errorf("raw check: bad entry key %q", k)
				continue
			}
			ts, _, _, err := storage.DecodeValue(v)
			if err != nil {
				t.Errorf("raw check: entry %q/%q %d: value %q does not decode", src, stream, seq, v)
			}
			if r, ok := blocks[blockKey{src, seq >> 8}]; !ok || ts < r[0] || ts > r[1] {
				t.Errorf("raw check: entry %q/%q %d (timestamp %d): its block summary %v (present %v) does not cover it", src, stream, seq, ts, r, ok)
			}
			st.entries++
			st.maxSeq[src] = max(st.maxSeq[src], seq)
		case 'd':
			if len(k) != 1+8+8 || len(v) == 0 || len(v)%24 != 0 {
				t.Errorf("raw check: bad dedup key %q = %x", k, v)
			}
			st.dedups++
		default:
			t.Errorf("raw check: unknown key %q", k)
		}
	}
	if err := it.Error(); err != nil {
		t.Errorf("raw check: iterate: %v", err)
	}
	if !marker {
		t.Errorf("raw check: no format marker")
	}
	for src, m := range st.maxSeq {
		if q, ok := st.seqs[src]; !ok || m > q {
			t.Errorf("raw check: source %q has entry %d above its sequence key %d (present %v)", src, m, q, ok)
		}
	}
	for src, m := range st.marks {
		if q := st.seqs[src]; m > q {
			t.Errorf("raw check: source %q has an age mark %d above its sequence key %d", src, m, q)
		}
	}
	return st
}

// splitEntryKey decodes 'e' src 0x00 stream 0x00 seq[8].
func splitEntryKey(k []byte) (src, stream string, seq uint64, ok bool) {
	if len(k) < 1+1+1+1+1+8 || k[0] != 'e' {
		return "", "", 0, false
	}
	rest, seqb := k[1:len(k)-8], k[len(k)-8:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 || rest[len(rest)-1] != 0 {
		return "", "", 0, false
	}
	src, stream = string(rest[:i]), string(rest[i+1:len(rest)-1])
	seq = binary.BigEndian.Uint64(seqb)
	return src, stream, seq, okName(src) && okName(stream) && seq > 0
}

// quietLogger keeps Pebble's info logs out of the test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func okName(s string) bool { return s != "" && !strings.ContainsRune(s, 0) }

func openMem(t *testing.T, fs vfs.FS, opts storage.Options) *storage.Store {
	t.Helper()
	opts.FS = fs
	s, err := storage.Open("db", opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestStore_Invalid(t *testing.T) {
	s := openMem(t, vfs.NewMem(), storage.Options{})
	defer s.Close()
	ctx := context.Background()
	for _, c := range []struct{ name, src, stream string }{
		{"EmptySource", "", "console"},
		{"EmptyStream", "dev", ""},
		{"NULInSource", "de\x00v", "console"},
		{"NULInStream", "dev", "con\x00sole"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := storage.Record{Src: c.src, Stream: c.stream, Msg: []byte("1")}
			if _, err := s.Append(ctx, rec); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("append: %v, want ErrInvalid", err)
			}
			done := make(chan error, 1)
			s.AppendAsync(rec, func(_ storage.Entry, err error) { done <- err })
			if err := <-done; !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("append async: %v, want ErrInvalid", err)
			}
			if err := s.Delete(ctx, c.src, c.stream); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("delete: %v, want ErrInvalid", err)
			}
			if _, err := s.List(ctx, storage.Query{Src: c.src, Stream: c.stream, Last: -1}); c.stream != "" && !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("list: %v, want ErrInvalid", err)
			}
			if c.src != "dev" {
				if _, err := s.Head(ctx, c.src); !errors.Is(err, storage.ErrInvalid) {
					t.Errorf("head: %v, want ErrInvalid", err)
				}
			}
		})
	}
	if err := s.Err(); err != nil {
		t.Errorf("invalid names failed the store: %v", err)
	}
}

func TestStore_Reopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var want []storage.Entry
	for round := 0; round < 3; round++ {
		s, err := storage.Open(dir, storage.Options{})
		if err != nil {
			t.Fatalf("open round %d: %v", round, err)
		}
		got, err := s.List(ctx, storage.Query{Src: "dev", Last: -1})
		if err != nil {
			t.Fatalf("list round %d: %v", round, err)
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: %d entries after reopen, want %d", round, len(got), len(want))
		}
		for i := range got {
			if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Msg, want[i].Msg) || got[i].Stream != want[i].Stream {
				t.Fatalf("round %d entry %d: %+v, want %+v", round, i, got[i], want[i])
			}
		}
		for i := 0; i < 5; i++ {
			e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: fmt.Sprint("s", i%2), Msg: []byte(fmt.Sprintf(`"%d.%d"`, round, i))})
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if len(want) > 0 && e.Seq <= want[len(want)-1].Seq {
				t.Fatalf("round %d: id %d not above %d", round, e.Seq, want[len(want)-1].Seq)
			}
			want = append(want, e)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close round %d: %v", round, err)
		}
		st := checkRaw(t, vfs.Default, dir)
		if st.entries != len(want) || st.seqs["dev"] != want[len(want)-1].Seq {
			t.Fatalf("round %d: raw keys hold %d entries, sequence %d; want %d, %d", round, st.entries, st.seqs["dev"], len(want), want[len(want)-1].Seq)
		}
	}
}

func TestStore_Format(t *testing.T) {
	t.Run("PinnedMajorVersion", func(t *testing.T) {
		fs := vfs.NewMem()
		openMem(t, fs, storage.Options{}).Close()
		db, err := pebble.Open("db", &pebble.Options{FS: fs, ReadOnly: true, Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := db.FormatMajorVersion(); got != pebble.FormatValueSeparation {
			t.Errorf("format major version %d, want the pinned %d", got, pebble.FormatValueSeparation)
		}
	})
	foreign := func(t *testing.T, kvs map[string]string) vfs.FS {
		fs := vfs.NewMem()
		db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range kvs {
			if err := db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	for _, c := range []struct {
		name string
		kvs  map[string]string
	}{
		{"ForeignKeysNoMarker", map[string]string{"users/1": "alice"}},
		{"ForeignKeyLikeOurs", map[string]string{"edev\x00console\x00": "x"}},
		{"NewerMarker", map[string]string{"m": "logbroker/3"}}, // a format this binary does not know
		{"ForeignMarker", map[string]string{"m": "something else", "n": "1"}},
	} {
		t.Run("Refuses"+c.name, func(t *testing.T) {
			fs := foreign(t, c.kvs)
			s, err := storage.Open("db", storage.Options{FS: fs})
			if err == nil {
				s.Close()
				t.Fatal("opened a foreign Pebble directory")
			}
			if !strings.Contains(err.Error(), "not a logbroker store") {
				t.Errorf("error %q does not say why", err)
			}
			// Left as it was: no marker written.
			db, err := pebble.Open("db", &pebble.Options{FS: fs, ReadOnly: true, Logger: quietLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			v, closer, err := db.Get([]byte("m"))
			if c.kvs["m"] == "" {
				if err == nil {
					closer.Close()
					t.Errorf("format marker %q written into a foreign directory", v)
				}
			} else if err != nil || string(v) != c.kvs["m"] {
				t.Errorf("marker changed to %q (%v)", v, err)
			} else {
				closer.Close()
			}
		})
	}
	t.Run("AcceptsEmptyPebbleDir", func(t *testing.T) {
		fs := foreign(t, nil)
		s := openMem(t, fs, storage.Options{})
		if _, err := s.Append(context.Background(), storage.Record{Src: "d", Stream: "s", Msg: []byte("1")}); err != nil {
			t.Errorf("append: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkRaw(t, fs, "db")
	})
}
