package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

// TestStore_OldFormat opens a store written before entries had levels
// (format logbroker/1: values are uvarint(timestamp) msg, no level byte)
// and checks that its entries read back exactly as they were, without a
// level, that new entries get their levels, and that the marker moves to
// logbroker/2 so that an older binary refuses the store.
func TestStore_OldFormat(t *testing.T) {
	fs, dir := vfs.NewMem(), "db"
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	old := []struct {
		ts  int64
		msg string
	}{{1764080000123, `"boot ok"`}, {0, `{"a":[1,"\u0001"]}`}, {253402300799999, `42`}, {7, "\t\"lead\""}}
	b := db.NewBatch()
	_ = b.Set([]byte("m"), []byte("logbroker/1"), nil)
	for i, o := range old {
		k := binary.BigEndian.AppendUint64([]byte("edev\x00console\x00"), uint64(i+1))
		_ = b.Set(k, append(binary.AppendUvarint(nil, uint64(o.ts)), o.msg...), nil)
	}
	_ = b.Set([]byte("qdev"), binary.BigEndian.AppendUint64(nil, uint64(len(old))), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := storage.Open(dir, storage.Options{FS: fs})
	if err != nil {
		t.Fatalf("open a logbroker/1 store: %v", err)
	}
	ctx := context.Background()
	e, err := s.Append(ctx, storage.Record{Src: "dev", Stream: "console", Timestamp: 9, Msg: []byte(`"new"`), Level: storage.LevelWarn})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != uint64(len(old)+1) {
		t.Errorf("new entry seq %d, want %d", e.Seq, len(old)+1)
	}
	check := func() {
		t.Helper()
		for _, q := range []storage.Query{{Src: "dev", Stream: "console", Last: -1}, {Src: "dev", Last: -1}} {
			got, err := s.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(old)+1 {
				t.Fatalf("listed %d entries, want %d", len(got), len(old)+1)
			}
			for i, o := range old {
				g := got[i]
				if g.Seq != uint64(i+1) || g.Timestamp != o.ts || string(g.Msg) != o.msg || g.Level != storage.NoLevel {
					t.Errorf("old entry %d read back as seq %d ts %d level %d msg %q, want ts %d no level msg %q", i+1, g.Seq, g.Timestamp, g.Level, g.Msg, o.ts, o.msg)
				}
			}
			if n := got[len(old)]; n.Level != storage.LevelWarn || string(n.Msg) != `"new"` {
				t.Errorf("new entry read back as %+v", n)
			}
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = storage.Open(dir, storage.Options{FS: fs}); err != nil {
		t.Fatal(err)
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkRaw(t, fs, dir) // the marker is logbroker/2 now
}

// TestDecodeValue pins the value layout: no header byte for a JSON msg
// without a level (the old layout), one for a level or a msg that starts
// like one.
func TestDecodeValue(t *testing.T) {
	cases := []struct {
		level  storage.Level
		msg    string
		header bool
	}{
		{storage.NoLevel, `"x"`, false},
		{storage.NoLevel, ``, false},
		{storage.NoLevel, "\x07", true},
		{storage.NoLevel, "\x08", false},
		{storage.LevelError, `"x"`, true},
		{storage.LevelVerbose, ``, true},
		{storage.LevelInfo, "\x03", true},
	}
	for _, c := range cases {
		v := storage.AppendValue([]byte("pre"), 300, c.level, []byte(c.msg))[3:]
		if want := 2 + len(c.msg) + map[bool]int{true: 1}[c.header]; len(v) != want {
			t.Errorf("level %d msg %q: value %q, want %d bytes", c.level, c.msg, v, want)
		}
		ts, level, msg, err := storage.DecodeValue(v)
		if err != nil || ts != 300 || level != c.level || !bytes.Equal(msg, []byte(c.msg)) {
			t.Errorf("level %d msg %q: decoded %d %d %q %v", c.level, c.msg, ts, level, msg, err)
		}
	}
	if _, _, _, err := storage.DecodeValue([]byte{1, 6, 'x'}); err == nil {
		t.Errorf("header byte 6 decoded")
	}
}
