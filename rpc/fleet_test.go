package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/logbroker/logbroker/integration/await"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage"
)

// fleetAnswer is a decoded Log.Fleet result.
type fleetAnswer struct {
	Total        int   `json:"total"`
	Offset       int   `json:"offset"`
	WindowMS     int64 `json:"window_ms"`
	CountedSince int64 `json:"counted_since"`
	Complete     bool  `json:"complete"`
	Sources      []struct {
		Src           string `json:"src"`
		LastID        string `json:"last_id"`
		LastTimestamp *int64 `json:"last_timestamp"`
		Entries       int64  `json:"entries"`
		Errors        int64  `json:"errors"`
		CapturedLost  *int64 `json:"captured_lost"`
		Restarts      *int64 `json:"restarts"`
	} `json:"sources"`
}

// names lists the sources of a page, in order.
func (a fleetAnswer) names() []string {
	var out []string
	for _, s := range a.Sources {
		out = append(out, s.Src)
	}
	return out
}

// row is a compact view of one source: "src entries/errors".
func (a fleetAnswer) rows() string {
	s := ""
	for i, r := range a.Sources {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s:%d/%d", r.Src, r.Entries, r.Errors)
	}
	return s
}

func (e *env) fleet(c *Conn, src, args string) fleetAnswer {
	e.t.Helper()
	r := e.mustCall(c, src, "Log.Fleet", args)
	var a fleetAnswer
	if err := json.Unmarshal(r.Result, &a); err != nil {
		e.t.Fatalf("Log.Fleet result %s: %v", r.Result, err)
	}
	return a
}

// waitFleet calls Log.Fleet until cond holds of its answer (the counts
// follow the durable entries on the fanout goroutine).
func (e *env) waitFleet(c *Conn, src, args, what string, cond func(fleetAnswer) bool) fleetAnswer {
	e.t.Helper()
	var a fleetAnswer
	await.Until(e.t, waitFor, what, func() bool {
		a = e.fleet(c, src, args)
		return cond(a)
	})
	return a
}

// clock is a settable clock for the fleet's minutes.
type clock struct{ ms atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ms.Store(t.UnixMilli())
	return c
}
func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

func TestLogFleet(t *testing.T) {
	clk := newClock(time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC))
	e := newEnv(t, Config{now: clk.now})
	admin := e.svc.Open("admin")
	for i := range 3 {
		e.logAt(admin, "dev-a", "console", int64(1000+i))
	}
	e.mustCall(admin, "dev-b", "Log.Log", `{"msg":"sensor failed","level":"error","timestamp":5000}`)
	for i := range 5 {
		e.logAt(admin, "dev-c", "sensor", int64(2000+i))
	}
	a := e.waitFleet(admin, "admin", `{"sort":"entries"}`, "9 entries counted", func(a fleetAnswer) bool {
		return a.rows() == "dev-c:5/0 dev-a:3/0 dev-b:1/1" && a.Complete
	})
	if a.Total != 3 || a.WindowMS != 3600000 || a.Offset != 0 {
		t.Errorf("answer %+v: want total 3, window 3600000, offset 0", a)
	}
	// The broker is younger than the window: counted since it started.
	if a.CountedSince != clk.now().UnixMilli() {
		t.Errorf("counted_since %d, want the start %d", a.CountedSince, clk.now().UnixMilli())
	}
	if c := a.Sources[0]; c.LastID != storage.FormatID(5) || c.LastTimestamp == nil || *c.LastTimestamp != 2004 {
		t.Errorf("dev-c's latest entry %+v, want id 5 at 2004", c)
	}

	t.Run("Sorts", func(t *testing.T) {
		e.t = t
		for _, c := range []struct{ sort, want string }{
			{"src", "dev-a dev-b dev-c"},
			{"last", "dev-b dev-c dev-a"}, // latest timestamp first
			{"entries", "dev-c dev-a dev-b"},
			{"errors", "dev-b dev-c dev-a"}, // then most entries
		} {
			if got := fmt.Sprint(e.fleet(admin, "admin", `{"sort":"`+c.sort+`"}`).names()); got != "["+c.want+"]" {
				t.Errorf("sort %s: %s, want [%s]", c.sort, got, c.want)
			}
		}
	})

	t.Run("Pages", func(t *testing.T) {
		e.t = t
		for _, c := range []struct{ args, want string }{
			{`{"sort":"src","limit":2}`, "[dev-a dev-b]"},
			{`{"sort":"src","offset":2,"limit":2}`, "[dev-c]"},
			{`{"sort":"src","offset":3}`, "[]"},
			{`{"sort":"src","offset":1e400}`, "[]"}, // clamped, not refused
			{`{"sort":"src","prefix":"dev-b"}`, "[dev-b]"},
		} {
			a := e.fleet(admin, "admin", c.args)
			if got := fmt.Sprint(a.names()); got != c.want && !(c.want == "[]" && got == "[]") {
				t.Errorf("%s: %s, want %s", c.args, got, c.want)
			}
			if wantTotal := map[bool]int{true: 1, false: 3}[c.args == `{"sort":"src","prefix":"dev-b"}`]; a.Total != wantTotal {
				t.Errorf("%s: total %d, want %d", c.args, a.Total, wantTotal)
			}
		}
	})

	t.Run("Levels", func(t *testing.T) {
		e.t = t
		// Only level 0 is an error; warnings and entries without a level are not.
		e.mustCall(admin, "dev-a", "Log.Log", `{"msg":"slow","level":"warn","timestamp":1003}`)
		e.mustCall(admin, "dev-a", "Log.Log", `{"msg":"down","level":0,"timestamp":1004}`)
		e.mustCall(admin, "dev-a", "Log.Log", `{"msg":"down again","level":0,"timestamp":1005}`)
		e.waitFleet(admin, "admin", "", "dev-a's errors", func(a fleetAnswer) bool {
			return a.rows() == "dev-a:6/2 dev-b:1/1 dev-c:5/0"
		})
	})

	t.Run("Window", func(t *testing.T) {
		e.t = t
		clk.advance(30 * time.Minute)
		e.logAt(admin, "dev-b", "console", 6000)
		e.waitFleet(admin, "admin", `{"sort":"src"}`, "dev-b's second entry", func(a fleetAnswer) bool {
			return a.rows() == "dev-a:6/2 dev-b:2/1 dev-c:5/0"
		})
		// An hour after the first entries they leave the window; dev-b's
		// second, 30 minutes later, stays. The rows stay, with their times.
		clk.advance(30 * time.Minute)
		a := e.fleet(admin, "admin", `{"sort":"src"}`)
		if a.rows() != "dev-a:0/0 dev-b:1/0 dev-c:0/0" {
			t.Errorf("an hour on: %s, want dev-a:0/0 dev-b:1/0 dev-c:0/0", a.rows())
		}
		if a.Sources[0].LastTimestamp == nil || *a.Sources[0].LastTimestamp != 1005 {
			t.Errorf("dev-a lost its latest entry: %+v", a.Sources[0])
		}
		if want := clk.now().Add(-59 * time.Minute).Truncate(time.Minute).UnixMilli(); a.CountedSince != want {
			t.Errorf("counted_since %d, want the window's first minute %d", a.CountedSince, want)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		e.t = t
		e.mustCall(admin, "dev-a", "Log.Delete", "")
		// Without a last_timestamp; last_id its head.
		e.waitFleet(admin, "admin", `{"prefix":"dev-a"}`, "dev-a emptied", func(a fleetAnswer) bool {
			return len(a.Sources) == 1 && a.Sources[0].LastTimestamp == nil && a.Sources[0].LastID == storage.FormatID(6)
		})
	})

	t.Run("BadArgs", func(t *testing.T) {
		e.t = t
		for _, c := range []struct{ args, want string }{
			{`{"sort":"name"}`, "sort must be one of"},
			{`{"sort":1}`, "sort must be a string"},
			{`{"offset":-1}`, "offset must be a non-negative integer"},
			{`{"offset":1.5}`, "offset must be a non-negative integer"},
			{`{"limit":0}`, "limit must be a positive integer"},
			{`{"prefix":true}`, "prefix must be a string"},
			{`[1]`, "args must be an object"},
		} {
			r := e.call(admin, "admin", "Log.Fleet", c.args)
			if r.code() != CodeBadRequest || !strings.Contains(r.Error.Message, c.want) {
				t.Errorf("%s: %s, want 400 %q", c.args, r.raw, c.want)
			}
		}
	})
}

// TestLogFleet_SharedSort: calls within cacheFor of a sorted view share it
// even while entries arrive (a client calling in a loop does not sort every
// source each time); a new minute or an unchanged fleet past it does not.
func TestLogFleet_SharedSort(t *testing.T) {
	clk := newClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	e := newEnv(t, Config{now: clk.now})
	f := e.svc.fleet
	admin := e.svc.Open("admin")
	e.logAt(admin, "a", "console", 1)
	e.waitFleet(admin, "admin", "", "a counted", func(a fleetAnswer) bool { return a.rows() == "a:1/0" })
	f.cacheMu.Lock()
	f.cacheFor = time.Hour
	f.cacheMu.Unlock()
	first := f.sorted("errors")
	e.logAt(admin, "b", "console", 1)
	await.Until(t, waitFor, "b counted", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.srcs["b"] != nil
	})
	if got := f.sorted("errors"); got != first {
		t.Errorf("a call within cacheFor sorted again")
	}
	if a := e.fleet(admin, "admin", ""); a.rows() != "a:1/0" {
		t.Errorf("within cacheFor: %s, want the shared view a:1/0", a.rows())
	}
	clk.advance(time.Minute)
	if a := e.fleet(admin, "admin", ""); a.rows() != "a:1/0 b:1/0" {
		t.Errorf("a minute on: %s, want a new view a:1/0 b:1/0", a.rows())
	}
	f.cacheMu.Lock()
	f.cacheFor = 0
	f.cacheMu.Unlock()
	again := f.sorted("errors")
	if f.sorted("errors") != again {
		t.Errorf("an unchanged fleet was sorted again")
	}
}

// TestLogFleet_FromCatalog: a service started over a store that already
// holds sources lists them, with their latest entries and no counts.
func TestLogFleet_FromCatalog(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.svc.Open("admin")
	e.logAt(admin, "old-1", "console", 111)
	e.logAt(admin, "old-2", "console", 222)

	late := &env{t: t, store: e.store, pub: newRecorder()}
	late.svc = New(e.store, late.pub, Config{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := late.svc.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	a := late.waitFleet(late.svc.Open("late"), "late", `{"sort":"src"}`, "the first catalog walk", func(a fleetAnswer) bool { return a.Complete })
	if a.rows() != "old-1:0/0 old-2:0/0" || *a.Sources[1].LastTimestamp != 222 {
		t.Errorf("fleet of a later service: %s %+v, want old-1 and old-2 with their times, no counts", a.rows(), a.Sources)
	}
}

// TestLogFleet_Permissions: a device sees its own sources only, a reader
// and an admin every source; a caller whose account is gone nothing.
func TestLogFleet_Permissions(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.svc.Open("admin")
	for _, src := range []string{"dev1", "dev1/sensor", "dev10", "dev2"} {
		e.logAt(admin, src, "console", 1)
	}
	e.waitFleet(admin, "admin", "", "4 sources", func(a fleetAnswer) bool { return a.Total == 4 })
	for _, c := range []struct {
		caller Caller
		want   string
	}{
		{Caller{Identity: "dev1", Role: RoleDevice, Secured: true}, "[dev1 dev1/sensor]"},
		{Caller{Identity: "dash", Role: RoleReader, Secured: true}, "[dev1 dev1/sensor dev10 dev2]"},
		{Caller{Identity: "ops", Role: RoleAdmin, Secured: true}, "[dev1 dev1/sensor dev10 dev2]"},
	} {
		conn := e.svc.OpenAs(c.caller.Identity, c.caller)
		a := e.fleet(conn, c.caller.Identity, `{"sort":"src"}`)
		if got := fmt.Sprint(a.names()); got != c.want || a.Total != len(a.Sources) {
			t.Errorf("%s (%s) sees %s (total %d), want %s", c.caller.Identity, c.caller.Role, got, a.Total, c.want)
		}
	}
	gone := e.svc.OpenAs("gone", Caller{Identity: "gone", Role: RoleNone, Secured: true})
	if r := e.call(gone, "gone", "Log.Fleet", ""); r.code() != CodeForbidden {
		t.Errorf("a caller without a role: %s, want 403", r.raw)
	}
}

// TestLogFleet_Bounded: past FleetMax sources the rest are not tracked,
// and the answer says it is incomplete.
func TestLogFleet_Bounded(t *testing.T) {
	e := newEnv(t, Config{FleetMax: 3})
	admin := e.svc.Open("admin")
	e.waitFleet(admin, "admin", "", "the first walk", func(a fleetAnswer) bool { return a.Complete })
	for i := range 5 {
		e.logAt(admin, fmt.Sprintf("s%d", i), "console", 1)
	}
	a := e.waitFleet(admin, "admin", "", "the bound reached", func(a fleetAnswer) bool { return !a.Complete })
	if a.Total != 3 {
		t.Errorf("%d sources tracked, want the bound, 3", a.Total)
	}
	// A later catalog walk, which lists all 5, still finds the fleet incomplete.
	if err := e.svc.fleet.walk(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}
	e.svc.fleet.mu.Lock()
	untracked := e.svc.fleet.untracked
	e.svc.fleet.mu.Unlock()
	if untracked != 2 {
		t.Errorf("after a walk: %d sources untracked, want 2", untracked)
	}
}

// TestLogFleet_Off: a negative FleetMax turns Log.Fleet off.
func TestLogFleet_Off(t *testing.T) {
	e := newEnv(t, Config{FleetMax: -1})
	c := e.svc.Open("c")
	if r := e.call(c, "c", "Log.Fleet", ""); r.code() != CodeNotFound {
		t.Errorf("Log.Fleet with FleetMax -1: %s, want 404", r.raw)
	}
}

// TestLogFleet_Capture: the console capture counts (PROTOCOL §8) of
// captured sources are shown, and left out for the others.
func TestLogFleet_Capture(t *testing.T) {
	e := newEnv(t, Config{})
	cp := e.svc.Capture(CaptureConfig{})
	admin := e.svc.Open("admin")
	e.logAt(admin, "plain", "console", 1)
	// seq 3 then 6: 2 lost; then 0: a restart.
	for _, p := range []string{"cons 3 1.0 1|a\n", "cons 6 1.0 1|b\n", "cons 0 1.0 1|c\n"} {
		cp.Write("cons", []byte(p))
	}
	cp.appends.Wait()
	a := e.waitFleet(admin, "admin", `{"sort":"src"}`, "both sources", func(a fleetAnswer) bool { return a.rows() == "cons:3/0 plain:1/0" })
	c, p := a.Sources[0], a.Sources[1]
	if c.CapturedLost == nil || *c.CapturedLost != 2 || c.Restarts == nil || *c.Restarts != 1 {
		t.Errorf("captured source %+v, want captured_lost 2, restarts 1", c)
	}
	if p.CapturedLost != nil || p.Restarts != nil {
		t.Errorf("plain source %+v has capture counts", p)
	}
}

// replies is a Publisher that hands on the responses on one topic and
// drops every other message (the live ones), for benchmarks.
type replies struct {
	topic string
	ch    chan []byte
}

func (r *replies) Publish(m Message) error {
	if m.Topic == r.topic {
		r.ch <- bytes.Clone(m.Payload)
	}
	return nil
}

// BenchmarkLogFleet measures one Log.Fleet call, request to response,
// over 10,000 sources (one entry each, every 10th with an error): a page
// of 50, most errors first, at the start and in the middle of the list;
// with a new sort each call, and with a shared sorted view.
// Run with: go test -run='^$' -bench=LogFleet -benchmem ./rpc/
func BenchmarkLogFleet(b *testing.B) {
	const n = 10_000
	pub := &replies{topic: "dash/rpc", ch: make(chan []byte, 1)}
	e := newEnvPub(b, Config{}, vfs.NewMem(), func(*recorder) Publisher { return pub })
	done := make(chan error, n)
	for i := range n {
		rec := storage.Record{Src: fmt.Sprintf("dev-%05d", i), Stream: "console", Timestamp: int64(i), Msg: []byte(`"boot ok"`)}
		if i%10 == 0 {
			rec.Level = storage.LevelError
		}
		e.store.AppendAsync(rec, func(_ storage.Entry, err error) { done <- err })
	}
	for range n {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	c := e.svc.Open("dash")
	fleet := func(args string) fleetAnswer {
		submit(c, `{"id":1,"src":"dash","method":"Log.Fleet","args":`+args+`}`)
		var r struct{ Result fleetAnswer }
		if err := json.Unmarshal(<-pub.ch, &r); err != nil {
			b.Fatal(err)
		}
		return r.Result
	}
	await.Until(b, waitFor, "10,000 sources", func() bool { return fleet(`{"limit":1}`).Total == n })
	// sort: every call finds the fleet changed and sorts it again (as
	// once a second while entries arrive); shared: calls share a view.
	for _, mode := range []string{"sort", "shared"} {
		for _, offset := range []int{0, 5000} {
			b.Run(fmt.Sprintf("%s/offset=%d", mode, offset), func(b *testing.B) {
				args := fmt.Sprintf(`{"sort":"errors","offset":%d,"limit":50}`, offset)
				b.ReportAllocs()
				for b.Loop() {
					if mode == "sort" {
						e.svc.fleet.mu.Lock()
						e.svc.fleet.version++
						e.svc.fleet.mu.Unlock()
						e.svc.fleet.cacheMu.Lock()
						e.svc.fleet.cacheFor = 0
						e.svc.fleet.cacheMu.Unlock()
					}
					if a := fleet(args); len(a.Sources) != 50 {
						b.Fatalf("%d sources", len(a.Sources))
					}
				}
			})
		}
	}
}
