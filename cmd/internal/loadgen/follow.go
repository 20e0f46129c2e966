package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// follower keeps one Log.List {follow: true} waiting on source and pages
// on with after = the last id it was answered.
type follower struct {
	r       *run
	src     string // frame src: answers come to <src>/rpc
	source  string // the followed source
	pc      mqtt.Client
	answers chan followAnswer
	seq     int64
	after   string // the last id answered; "" before any

	seen      atomic.Int64
	calls     int64
	lat       []time.Duration
	unmatched []seenAt // entries answered before the logger's response was in
}

type followAnswer struct {
	rep reply
	at  time.Time
}

type seenAt struct {
	key string
	at  time.Time
}

func (f *follower) onReply(_ mqtt.Client, m mqtt.Message) {
	at := time.Now()
	rep, err := scanReply(m.Payload())
	if err != nil {
		return
	}
	rep.result = append([]byte(nil), rep.result...) // paho may reuse the payload
	select {
	case f.answers <- followAnswer{rep, at}:
	default: // nobody waits for it: the follower has stopped
	}
}

// call sends one Log.List with args and waits for its answer.
func (f *follower) call(ctx context.Context, args string, wait time.Duration) (followAnswer, error) {
	f.seq++
	frame := `{"id":` + strconv.FormatInt(f.seq, 10) + `,"src":` + strconv.Quote(f.src) +
		`,"method":"Log.List","args":` + args
	if wait > 0 {
		frame += `,"timeout":` + strconv.FormatFloat(wait.Seconds(), 'f', -1, 64)
	}
	frame += "}"
	f.pc.Publish(f.r.reqTopic, 1, false, []byte(frame))
	deadline := time.NewTimer(wait + f.r.cfg.Timeout)
	defer deadline.Stop()
	for {
		select {
		case a := <-f.answers:
			if a.rep.id != f.seq {
				continue // the answer to a call given up on
			}
			if a.rep.code != 0 {
				return a, fmt.Errorf("follower %s: Log.List error %d", f.src, a.rep.code)
			}
			return a, nil
		case <-deadline.C:
			return followAnswer{}, fmt.Errorf("follower %s: no answer within %v", f.src, wait+f.r.cfg.Timeout)
		case <-ctx.Done():
			return followAnswer{}, ctx.Err()
		}
	}
}

// sync learns the followed source's last id, so that the follow starts
// right after it: every entry the run logs is then expected.
func (f *follower) sync(ctx context.Context) error {
	a, err := f.call(ctx, `{"src":`+strconv.Quote(f.source)+`,"last":1}`, 0)
	if err != nil {
		return err
	}
	ids, err := entryIDs(a.rep.result)
	if err != nil {
		return fmt.Errorf("follower %s: %w", f.src, err)
	}
	if len(ids) > 0 {
		f.after = ids[len(ids)-1]
	}
	return nil
}

// loop follows until ctx ends.
func (f *follower) loop(ctx context.Context) {
	const wait = 5 * time.Second
	for ctx.Err() == nil {
		args := `{"src":` + strconv.Quote(f.source) + `,"follow":true,"limit":1000`
		if f.after != "" {
			args += `,"after":` + strconv.Quote(f.after)
		}
		a, err := f.call(ctx, args+"}", wait)
		if err != nil {
			if ctx.Err() == nil {
				f.r.warnf("%v", err)
			}
			return
		}
		f.calls++
		ids, err := entryIDs(a.rep.result)
		if err != nil {
			f.r.warnf("follower %s: %v", f.src, err)
			return
		}
		f.match(ids, a.at)
		if len(ids) > 0 {
			f.after = ids[len(ids)-1]
		}
	}
}

// match takes the follow latency of each entry answered at at.
func (f *follower) match(ids []string, at time.Time) {
	r := f.r
	r.respMu.Lock()
	for _, id := range ids {
		key := f.source + "\x00" + id
		if t, ok := r.respAt[key]; ok {
			f.lat = append(f.lat, max(0, at.Sub(t)))
		} else {
			f.unmatched = append(f.unmatched, seenAt{key, at})
		}
	}
	r.respMu.Unlock()
	f.seen.Add(int64(len(ids)))
}

func entryIDs(result []byte) ([]string, error) {
	var es []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(result, &es); err != nil {
		return nil, fmt.Errorf("Log.List result: %w", err)
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids, nil
}

// followResult sums up the followers once they have stopped.
func (r *run) followResult() *FollowResult {
	fr := &FollowResult{Followers: len(r.followers)}
	var lat []time.Duration
	r.respMu.Lock()
	defer r.respMu.Unlock()
	for _, f := range r.followers {
		fr.Answers += f.calls
		fr.Seen += f.seen.Load()
		fr.Expected += r.logged[f.source]
		lat = append(lat, f.lat...)
		for _, u := range f.unmatched {
			if _, ok := r.respAt[u.key]; ok {
				fr.Early++ // the follower was answered first
				lat = append(lat, 0)
			}
		}
	}
	fr.Missed = max(0, fr.Expected-fr.Seen)
	fr.Latency = summarize(lat)
	return fr
}
