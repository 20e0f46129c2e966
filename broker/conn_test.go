package broker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestQueuedConn(t *testing.T) {
	t.Run("WritesInOrderThenFlushOnClose", func(t *testing.T) {
		a, b := net.Pipe()
		q := newQueuedConn(a, 1<<20)
		var want bytes.Buffer
		for i := range 100 {
			p := bytes.Repeat([]byte{byte(i)}, 1000)
			want.Write(p)
			if n, err := q.Write(p); err != nil || n != len(p) {
				t.Fatalf("write %d: %d, %v", i, n, err)
			}
		}
		// Nobody has read yet: the writes did not wait for the reader.
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("write after Close: %v, want net.ErrClosed", err)
		}
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("read %d bytes, want the %d written, in order", len(got), want.Len())
		}
	})
	t.Run("SlowConsumer", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		q := newQueuedConn(a, 4096)
		if _, err := q.Write(make([]byte, 3000)); err != nil {
			t.Fatal(err)
		}
		// The writer holds the first 3000 bytes (the pipe has no reader);
		// these wait in the queue until the limit is passed.
		var err error
		for i := 0; i < 10 && err == nil; i++ {
			_, err = q.Write(make([]byte, 1000))
		}
		if !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("writes past the limit: %v, want ErrSlowConsumer", err)
		}
		if _, err := q.Write([]byte("x")); !errors.Is(err, ErrSlowConsumer) {
			t.Errorf("write after the limit: %v, want ErrSlowConsumer", err)
		}
		// The connection is closed: the reader sees its end.
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(b); err != nil {
			t.Errorf("reader: %v, want EOF after what was sent", err)
		}
	})
}

func TestQueuedConnFlushBound(t *testing.T) {
	// A peer that never reads: Close still ends the connection within the
	// flush bound, even if deadlines are renewed after it (as mochi does
	// on every packet it reads).
	a, b := net.Pipe()
	defer b.Close()
	q := newQueuedConn(a, 1<<20)
	if _, err := q.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	_ = q.SetDeadline(time.Now().Add(time.Hour))
	select {
	case <-q.done:
	case <-time.After(10 * flushTimeout):
		t.Fatalf("writer still running %v after Close", time.Since(began))
	}
}
