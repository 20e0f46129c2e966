package jetstream

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/logbroker/logbroker/storage"
	"github.com/logbroker/logbroker/storage/queue"
)

// errCodeDupInProcess is JetStream's error for a publish whose message id
// is being stored right now (a resend racing its original).
const errCodeDupInProcess = 10158

// dedupIDPrefix starts the message id of a record with a Dedup key.
const dedupIDPrefix = "logbroker-dedup-"

// closeWait is the least Close waits for the acknowledgements of appends
// already published (2 × Options.AckWait if longer).
const closeWait = 5 * time.Second

// errRejected wraps an error JetStream returned for a publish that a retry
// would not fix.
var errRejected = errors.New("jetstream rejected the append")

// Append stores rec and returns its entry once JetStream acknowledged it:
// stored on a quorum of the stream's replicas. If ctx ends first it returns
// ctx's error; the entry may still be stored. rec.Msg must not be modified
// until Append returns.
func (s *Store) Append(ctx context.Context, rec storage.Record) (storage.Entry, error) {
	if err := checkNames(rec.Src, rec.Stream); err != nil {
		return storage.Entry{}, fmt.Errorf("append: %w", err)
	}
	if err := s.precheck(ctx); err != nil {
		return storage.Entry{}, fmt.Errorf("append: %w", err)
	}
	type result struct {
		e   storage.Entry
		err error
	}
	ch := make(chan result, 1)
	s.AppendAsync(rec, func(e storage.Entry, err error) { ch <- result{e, err} })
	select {
	case r := <-ch:
		return r.e, r.err
	case <-ctx.Done():
		return storage.Entry{}, fmt.Errorf("append: %w", ctx.Err())
	}
}

// AppendAsync publishes rec and returns at once. done (if not nil) runs
// exactly once, on another goroutine, when JetStream acknowledged the entry
// or the append failed. Records published by one goroutine are stored in
// that order while the stream keeps its leader (a publish lost in a leader
// change is published again, and may then land after later ones), and the
// Deletes it issues after them take effect after them. rec.Msg must not be
// modified until done runs.
func (s *Store) AppendAsync(rec storage.Record, done func(storage.Entry, error)) {
	if err := checkNames(rec.Src, rec.Stream); err != nil {
		refuse(done, err)
		return
	}
	s.pub.publish(s.partitionFor(rec.Src), rec, done)
}

func refuse(done func(storage.Entry, error), err error) {
	if done != nil {
		go done(storage.Entry{}, fmt.Errorf("append: %w", err))
	}
}

// publisher sends the appends of a store and matches JetStream's
// acknowledgements to them. Every append is one message with a reply
// subject under the publisher's inbox and a Nats-Msg-Id unique to the
// append, so that publishing it again after a lost acknowledgement stores
// it once (the stream's duplicate window). Appends complete in the order
// they were published: done callbacks run in that order on one goroutine.
type publisher struct {
	s      *Store
	inbox  string
	idBase string
	sub    *nats.Subscription

	mu       sync.Mutex
	closed   bool
	next     uint64         // last ticket issued
	pending  map[uint64]*op // published, not acknowledged
	fifo     []*op          // issued and not yet handed to the callbacks, in ticket order
	finished uint64         // every ticket up to this one is complete
	advanced chan struct{}  // closed and replaced when finished moves

	// Completed ops, in ticket order, for the callback goroutine: an
	// unbounded queue, so that onAck never waits for a slow callback.
	callbacks queue.Worker[*op]

	quit    chan struct{}
	stopped sync.WaitGroup

	resent         atomic.Int64                  // publishes sent again
	ackGate        atomic.Pointer[chan struct{}] // tests: onAck waits until it is closed
	entries, bytes atomic.Uint64                 // appends acknowledged, bytes of their msg
}

// op is one append in flight.
type op struct {
	ticket   uint64
	msg      *nats.Msg
	rec      storage.Record
	done     func(storage.Entry, error)
	first    time.Time // first publish
	sent     time.Time // last publish; zero: publish again at the next tick
	complete bool
	e        storage.Entry
	err      error
}

func (p *publisher) init(s *Store) error {
	p.s = s
	p.inbox = s.nc.NewRespInbox()
	p.idBase = nuid.Next() + "-"
	p.pending = map[uint64]*op{}
	p.advanced = make(chan struct{})
	p.quit = make(chan struct{})
	sub, err := s.nc.Subscribe(p.inbox+".*", p.onAck)
	if err != nil {
		return fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	p.sub = sub
	p.callbacks.Start(runCallbacks)
	p.stopped.Add(1)
	go p.resendLoop()
	return nil
}

func (p *publisher) publish(part *partition, rec storage.Record, done func(storage.Entry, error)) {
	p.mu.Lock()
	if p.closed || p.sub == nil {
		p.mu.Unlock()
		refuse(done, storage.ErrClosed)
		return
	}
	p.next++
	t := p.next
	m := nats.NewMsg(part.entrySubject(rec.Src, rec.Stream))
	m.Reply = p.inbox + "." + strconv.FormatUint(t, 10)
	if p.s.opts.DedupWindow > 0 && rec.Dedup != (storage.DedupKey{}) {
		// The record's own key: JetStream stores one message per key
		// within the Duplicates window (doc.go, De-duplication).
		m.Header.Set(nats.MsgIdHdr, dedupIDPrefix+hex.EncodeToString(rec.Dedup[:]))
	} else {
		m.Header.Set(nats.MsgIdHdr, p.idBase+strconv.FormatUint(t, 10))
	}
	m.Header.Set("Nats-Expected-Stream", part.name)
	m.Data = encodeValue(rec.Timestamp, rec.Level, rec.Msg)
	now := time.Now()
	o := &op{ticket: t, msg: m, rec: rec, done: done, first: now, sent: now}
	p.pending[t] = o
	p.fifo = append(p.fifo, o)
	// Published under mu, so the order on the wire is the ticket order.
	err := p.s.nc.PublishMsg(m)
	if errors.Is(err, nats.ErrConnectionClosed) {
		p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: %w", err))
	} else if err != nil {
		o.sent = time.Time{} // the resend loop tries again
	}
	p.mu.Unlock()
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// onAck handles a reply to a publish, on the subscription's goroutine.
func (p *publisher) onAck(m *nats.Msg) {
	if g := p.ackGate.Load(); g != nil {
		<-*g
	}
	i := strings.LastIndexByte(m.Subject, '.')
	t, err := strconv.ParseUint(m.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.pending[t]
	if o == nil {
		return // a late reply to an op already complete
	}
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		// 503 no responders: no stream leader yet. Publish again soon.
		o.sent = time.Time{}
		return
	}
	var ack pubAck
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: decode acknowledgement: %w", err))
		return
	}
	if ack.Error != nil {
		switch {
		case ack.Error.ErrCode == errCodeDupInProcess:
			// The first publish of the message id is still being
			// stored. If it was this op's, its acknowledgement comes to
			// the same reply subject; if another op's (a record with the
			// same Dedup key), the resend loop publishes this one again
			// after AckWait and gets the first's sequence then.
			return
		case ack.Error.Code == 503 || ack.Error.Code == 408:
			o.sent = time.Time{} // temporarily unavailable: publish again
			return
		}
		p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: %w: %d %s", errRejected, ack.Error.ErrCode, ack.Error.Description))
		return
	}
	r := o.rec
	// A duplicate of a keyed record: JetStream stored the first (on a
	// quorum) before it answers so. (A resend of this very op after a
	// lost acknowledgement is marked too: it is indistinguishable.)
	p.s.partitionFor(r.Src).noteStored(ack.Seq) // the leader acknowledges what it stored
	dup := ack.Duplicate && p.s.opts.DedupWindow > 0 && r.Dedup != (storage.DedupKey{})
	if !dup {
		p.entries.Add(1)
		p.bytes.Add(uint64(len(r.Msg)))
	}
	p.completeLocked(o, storage.Entry{Seq: ack.Seq, Src: r.Src, Stream: r.Stream, Timestamp: r.Timestamp, Msg: r.Msg, Level: r.Level, Duplicate: dup}, nil)
}

// completeLocked records o's outcome and hands every complete op at the
// head of the queue to the callback goroutine.
func (p *publisher) completeLocked(o *op, e storage.Entry, err error) {
	if o.complete {
		return
	}
	o.complete, o.e, o.err = true, e, err
	delete(p.pending, o.ticket)
	n := 0
	for n < len(p.fifo) && p.fifo[n].complete {
		n++
	}
	if n == 0 {
		return
	}
	p.finished = p.fifo[n-1].ticket
	p.callbacks.PushAll(p.fifo[:n])
	clear(p.fifo[:n])
	p.fifo = p.fifo[n:]
	close(p.advanced)
	p.advanced = make(chan struct{})
}

// runCallbacks runs the done callbacks of completed ops, in ticket order.
func runCallbacks(q []*op) {
	for _, o := range q {
		if o.done != nil {
			o.done(o.e, o.err)
		}
	}
}

// resendLoop publishes again, in ticket order, every op whose
// acknowledgement is overdue or whose publish failed, and fails those past
// AppendExpiry.
func (p *publisher) resendLoop() {
	defer p.stopped.Done()
	tick := time.NewTicker(max(p.s.opts.AckWait/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case now := <-tick.C:
			p.resend(now)
		}
	}
}

func (p *publisher) resend(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.fifo {
		if o.complete {
			continue
		}
		if now.Sub(o.first) > p.s.opts.AppendExpiry {
			p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: not acknowledged within %v: %w", p.s.opts.AppendExpiry, context.DeadlineExceeded))
			continue
		}
		if now.Sub(o.sent) < p.s.opts.AckWait {
			continue
		}
		err := p.s.nc.PublishMsg(o.msg)
		if errors.Is(err, nats.ErrConnectionClosed) {
			p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: %w", err))
			continue
		}
		if err == nil {
			o.sent = now
			p.resent.Add(1)
		}
	}
}

// waitFor waits until every append issued before the call is complete.
func (p *publisher) waitFor(ctx context.Context) error {
	p.mu.Lock()
	target := p.next
	for p.finished < target {
		ch := p.advanced
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// close fails the appends in flight with storage.ErrClosed and waits for
// their callbacks.
func (p *publisher) close() {
	if p.sub == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	// Flush: what was published may still be stored, so wait for its
	// acknowledgements (resends go on meanwhile), for a while.
	grace := time.NewTimer(max(2*p.s.opts.AckWait, closeWait))
	defer grace.Stop()
	for expired := false; p.finished < p.next && !expired; {
		ch := p.advanced
		p.mu.Unlock()
		select {
		case <-ch:
		case <-grace.C:
			expired = true
		}
		p.mu.Lock()
	}
	for _, o := range append([]*op(nil), p.fifo...) {
		p.completeLocked(o, storage.Entry{}, fmt.Errorf("append: %w", storage.ErrClosed))
	}
	p.mu.Unlock()
	close(p.quit)
	p.stopped.Wait()
	p.sub.Unsubscribe()
	p.callbacks.Stop()
}
