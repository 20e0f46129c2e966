package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// soakRounds is the number of kill-and-restart rounds of TestCrashSoak:
// 3 unless LOGBROKER_SOAK_ROUNDS says otherwise.
func soakRounds(t *testing.T) int {
	v := os.Getenv("LOGBROKER_SOAK_ROUNDS")
	if v == "" {
		return 3
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("LOGBROKER_SOAK_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// soakMsg is the msg of every soak entry: which round, which call.
type soakMsg struct {
	R int `json:"r"`
	N int `json:"n"`
}

// soakEntry is an entry as one observer saw it.
type soakEntry struct {
	entry
	seenBy string
}

// soakLog is what the test knows of one source across rounds: the
// acknowledged calls and every entry an observer was sent.
type soakLog struct {
	src   string
	acked map[soakMsg]string // call -> entry id of its response
	seen  []soakEntry        // entries a follower or live subscriber received
	last  string             // id of the last entry stored (follow position)
}

// TestCrashSoak kills the broker with SIGKILL at random moments while
// clients stream Log.Log calls, restarts it on the same data directory,
// and checks after every round that every acknowledged entry is stored
// exactly once under its id, that ids strictly increase per source across
// the restarts, and that no entry a follower (Log.List follow loop) or a
// live subscriber (+/log/#) received went missing.
// LOGBROKER_SOAK_ROUNDS=N runs N rounds (default 3).
func TestCrashSoak(t *testing.T) {
	t.Parallel()
	rounds := soakRounds(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("seed %d, %d rounds", seed, rounds)

	const nSrc = 3
	logs := make([]*soakLog, nSrc)
	for k := range logs {
		logs[k] = &soakLog{src: fmt.Sprintf("soak-%d", k), acked: map[soakMsg]string{}}
	}
	data := t.TempDir()
	checked, kills := 0, 0
	for r := 1; r <= rounds; r++ {
		s := startIn(t, data)
		// Observers first, so they see every entry of the round.
		live := s.dial(t)
		live.subscribe("+/log/#", 0)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		followers := make([]*client, nSrc)
		followed := make([][]entry, nSrc)
		bad := make([]string, nSrc)
		for k, l := range logs {
			followers[k] = s.dial(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				followed[k], bad[k] = followLoop(followers[k], l.src, l.last, stop)
			}()
		}
		pumps := make([]*soakPump, nSrc)
		for k, l := range logs {
			pumps[k] = &soakPump{c: s.dial(t), src: l.src, round: r}
			pumps[k].c.subscribe(l.src+"/rpc", 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				pumps[k].run(stop)
			}()
		}
		// Kill once a random number of calls has been answered.
		target := 10 + rng.IntN(400)
		deadline := time.Now().Add(4 * callTimeout)
		for soakAnswered(pumps) < target {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d of %d responses within %v", r, soakAnswered(pumps), target, 4*callTimeout)
			}
			pumps[0].c.tryWaitMsg(pumps[0].c.mark(), 50*time.Millisecond, func(message) bool { return true })
		}
		s.kill9()
		kills++
		close(stop)
		wg.Wait()

		acked := 0
		for k, l := range logs {
			acked += pumps[k].collect(t, l)
			if bad[k] != "" {
				t.Errorf("round %d: %s: follow answered %s", r, l.src, bad[k])
			}
			for _, e := range followed[k] {
				l.seen = append(l.seen, soakEntry{e, "follower"})
			}
		}
		for _, m := range live.messages(0) {
			var e entry
			if err := json.Unmarshal(m.Payload, &e); err != nil {
				t.Errorf("round %d: live message on %s is no entry: %s", r, m.Topic, abbrev(m.Payload, 200))
				continue
			}
			if want := e.Src + "/log/" + e.Stream; m.Topic != want {
				t.Errorf("round %d: entry of %s/%s published on %s", r, e.Src, e.Stream, m.Topic)
			}
			for _, l := range logs {
				if l.src == e.Src {
					l.seen = append(l.seen, soakEntry{e, "live subscriber"})
				}
			}
		}

		s2 := startIn(t, data)
		d := s2.dial(t)
		for _, l := range logs {

			checked += checkSoak(t, r, l, d.listAll(l.src))
		}
		s2.stop()
		t.Logf("round %d: killed after %d responses (target %d); %d acknowledged this round", r, soakAnswered(pumps), target, acked)
		if t.Failed() {
			break
		}
	}
	totalAcked, totalSeen := 0, 0
	for _, l := range logs {
		totalAcked += len(l.acked)
		totalSeen += len(l.seen)
	}
	t.Logf("%d rounds, %d kills, %d entry checks (stored entries listed after each round; %d acknowledged, %d received by observers)", rounds, kills, checked, totalAcked, totalSeen)
}

// checkSoak checks the entries stored for l.src after round r and returns
// how many it checked.
func checkSoak(t *testing.T, r int, l *soakLog, stored []entry) int {
	t.Helper()
	byID := map[string]entry{}
	byMsg := map[soakMsg]string{}
	prev := soakMsg{}
	for i, e := range stored {
		var m soakMsg
		if err := json.Unmarshal(e.Msg, &m); err != nil || m.R == 0 || m.N == 0 {
			t.Errorf("round %d: %s: entry %s has msg %s, not {r, n}", r, l.src, e.ID, e.Msg)
			continue
		}
		if i > 0 && e.ID <= stored[i-1].ID {
			t.Errorf("round %d: %s: ids not strictly increasing: %s after %s", r, l.src, e.ID, stored[i-1].ID)
		}
		if m.R < prev.R || (m.R == prev.R && m.N <= prev.N) {
			t.Errorf("round %d: %s: call %+v stored after %+v: not in publish order across restarts", r, l.src, m, prev)
		}
		prev = m
		if id, dup := byMsg[m]; dup {
			t.Errorf("round %d: %s: call %+v stored twice (%s and %s)", r, l.src, m, id, e.ID)
		}
		byMsg[m] = e.ID
		byID[e.ID] = e
	}
	lost := 0
	for m, id := range l.acked {
		got, ok := byMsg[m]
		switch {
		case !ok:
			if lost++; lost <= 5 {
				t.Errorf("round %d: %s: acknowledged call %+v (entry %s) lost", r, l.src, m, id)
			}
		case got != id:
			t.Errorf("round %d: %s: call %+v acknowledged as %s, stored as %s", r, l.src, m, id, got)
		}
	}
	if lost > 0 {
		t.Errorf("round %d: %s: %d of %d acknowledged entries lost", r, l.src, lost, len(l.acked))
	}
	missing := 0
	for _, se := range l.seen {
		got, ok := byID[se.ID]
		if !ok || got.Stream != se.Stream || !bytes.Equal(compact(got.Msg), compact(se.Msg)) || got.Timestamp != se.Timestamp {
			if missing++; missing <= 5 {
				t.Errorf("round %d: %s: entry %s %s sent to a %s is missing or changed after the restart (stored: %+v)", r, l.src, se.ID, se.Msg, se.seenBy, got)
			}
		}
	}
	if len(stored) > 0 {
		l.last = stored[len(stored)-1].ID
	}
	return len(stored)
}

// soakPump streams Log.Log calls for src as fast as the QoS 1 flow of its
// client allows, until stop or until the broker is gone.
type soakPump struct {
	c     *client
	src   string
	round int
	sent  int
}

func (p *soakPump) run(stop <-chan struct{}) {
	for i := 1; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		frame := fmt.Sprintf(`{"id":%d,"src":%q,"method":"Log.Log","args":{"msg":{"r":%d,"n":%d},"stream":"s%d"}}`, i, p.src, p.round, i, i%2)
		tok := p.c.pc.Publish("logbroker/rpc", 1, false, frame)
		if !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
			return // the broker is gone
		}
		p.sent = i
	}
}

// soakAnswered counts the responses the pumps received so far.
func soakAnswered(pumps []*soakPump) int {
	n := 0
	for _, p := range pumps {
		n += p.c.count(0, p.src+"/rpc")
	}
	return n
}

// collect records the calls the pump's responses acknowledged in l and
// returns how many; an error response fails the test (nothing here should
// be refused).
func (p *soakPump) collect(t *testing.T, l *soakLog) int {
	t.Helper()
	n := 0
	seen := map[int]bool{}
	for _, m := range p.c.messages(0) {
		if m.Topic != p.src+"/rpc" {
			continue
		}
		resp, ok := decodeResponse(m)
		var i int
		if !ok || json.Unmarshal(resp.ID, &i) != nil {
			t.Errorf("%s: undecodable response %s", p.src, abbrev(m.Payload, 200))
			continue
		}
		if seen[i] {
			t.Errorf("%s: round %d: two responses to call %d", p.src, p.round, i)
		}
		seen[i] = true
		if resp.Error != nil {
			t.Errorf("%s: round %d: call %d failed: %s", p.src, p.round, i, resp.Raw)
			continue
		}
		l.acked[soakMsg{p.round, i}] = resp.logID(t)
		n++
	}
	return n
}

// followLoop follows src with Log.List (follow, after = the last id it
// got) until stop, and returns every entry it received, and the first
// response that was not a list of entries. Calls that were pending when
// the broker died are abandoned.
func followLoop(c *client, src, after string, stop <-chan struct{}) ([]entry, string) {
	var got []entry
	for i := 1; ; i++ {
		args := map[string]any{"src": src, "follow": true, "limit": 1000}
		if after != "" {
			args["after"] = after
		}
		frame, _ := json.Marshal(map[string]any{"id": i, "src": c.src, "method": "Log.List", "args": args, "timeout": 5})
		from := c.mark()
		tok := c.pc.Publish("logbroker/rpc", 1, false, frame)
		if !tok.WaitTimeout(callTimeout) || tok.Error() != nil {
			return got, ""
		}
		want := strconv.Itoa(i)
		for {
			m, _, ok := c.tryWaitMsg(from, 100*time.Millisecond, func(m message) bool {
				r, ok := decodeResponse(m)
				return ok && m.Topic == c.src+"/rpc" && string(compact(r.ID)) == want
			})
			if ok {
				r, _ := decodeResponse(m)
				var es []entry
				if r.Error != nil || json.Unmarshal(r.Result, &es) != nil {
					return got, r.Raw
				}
				got = append(got, es...)
				if len(es) > 0 {
					after = es[len(es)-1].ID
				}
				break
			}
			select {
			case <-stop:
				return got, ""
			default:
			}
		}
	}
}
