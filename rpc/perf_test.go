package rpc

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/integration/await"
	"github.com/logbroker/logbroker/storage"
)

// interestedIn is a recorder that is an Interest: only topics with the
// given prefix have subscribers.
type interestedIn struct {
	*recorder
	prefix string
}

func (p interestedIn) Interested(topic string) bool { return strings.HasPrefix(topic, p.prefix) }

func TestLivePublishOnlyWhenInterested(t *testing.T) {
	e := newEnvPub(t, Config{}, vfs.NewMem(), func(r *recorder) Publisher { return interestedIn{r, "watched/"} })
	c := e.svc.Open("c1")
	defer c.Close()
	for _, src := range []string{"quiet", "watched"} {
		t.Run(src, func(t *testing.T) {
			before := e.svc.Stats()
			id := e.log(c, src, "console", `"hello"`)
			// The live message (or its skipping) follows the response; a
			// Log.List through the same connection does not wait for it, so
			// poll the counters.
			await.Until(t, waitFor, "live publish or skip", func() bool {
				s := e.svc.Stats()
				return s.LivePublish+s.LiveSkipped > before.LivePublish+before.LiveSkipped
			})
			got := e.pub.on(src + "/log/console")
			s := e.svc.Stats()
			if src == "watched" {
				if len(got) != 1 || !strings.Contains(string(got[0].Payload), id) {
					t.Errorf("live messages on %s/log/console: %d (%s), want the entry %s", src, len(got), e.pub, id)
				}
				if s.LiveSkipped != before.LiveSkipped {
					t.Errorf("LiveSkipped grew to %d for a watched topic", s.LiveSkipped)
				}
				return
			}
			if len(got) != 0 {
				t.Errorf("%d live messages on %s/log/console, which nobody watches", len(got), src)
			}
			if s.LiveSkipped != before.LiveSkipped+1 {
				t.Errorf("LiveSkipped = %d, want %d", s.LiveSkipped, before.LiveSkipped+1)
			}
		})
	}
}

func TestAppendIDIsFormatID(t *testing.T) {
	for _, seq := range []uint64{0, 1, 0xabcdef, 1<<63 + 5, ^uint64(0)} {
		t.Run(storage.FormatID(seq), func(t *testing.T) {
			if got, want := string(appendID([]byte("x"), seq)), "x"+storage.FormatID(seq); got != want {
				t.Errorf("appendID = %s, want %s", got, want)
			}
		})
	}
}

// TestResponseOneAllocation: a response is built in a buffer sized up
// front (responseSize, entriesSize), so encoding never grows it.
func TestResponseOneAllocation(t *testing.T) {
	f := &Frame{ID: []byte("123456"), Src: "bench-12", Tag: "t\"ag", HasTag: true}
	entries := []storage.Entry{
		{Seq: 7, Src: "dev", Stream: "console", Timestamp: 1700000000000, Msg: []byte(`"a line of text"`)},
		{Seq: 8, Src: "dev", Stream: "s\u00e9", Timestamp: 1, Msg: []byte(`{"k":[1,2]}`)},
	}
	t.Run("Entries", func(t *testing.T) {
		n := responseSize(f, DefaultID, entriesSize(entries))
		buf := make([]byte, 0, n)
		buf = appendResponseHead(buf, f, DefaultID)
		buf = append(buf, `,"result":`...)
		buf = append(appendEntries(buf, entries), '}')
		if len(buf) > n {
			t.Errorf("response of %d bytes outgrew its buffer of %d", len(buf), n)
		}
		want := appendResponse(nil, f, DefaultID, appendEntries(nil, entries), 0, "")
		if string(buf) != string(want) {
			t.Errorf("got  %s\nwant %s", buf, want)
		}
	})
	t.Run("Error", func(t *testing.T) {
		msg := "no such method: X"
		n := responseSize(f, DefaultID, len(msg)+len(`{"code":,"message":""}`)+4)
		if got := appendResponse(make([]byte, 0, n), f, DefaultID, nil, 404, msg); len(got) > n {
			t.Errorf("error response of %d bytes outgrew its buffer of %d", len(got), n)
		}
	})
}
