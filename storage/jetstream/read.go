package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbroker/logbroker/storage"
)

const (
	// maxBatch is the most entries one direct get request asks for.
	maxBatch = 1000
	// minReadWait is the shortest wait for a direct get's answer before
	// asking again (the wait is Options.AckWait, at least this).
	minReadWait = 500 * time.Millisecond
)

// errUnavailable wraps a JetStream answer that a retry may fix (no stream
// leader yet, a replica behind the leader).
var errUnavailable = errors.New("jetstream unavailable")

// List returns the entries q selects (PROTOCOL §5), read from the stream
// replica nearest to this node after checking that it holds every entry
// the stream leader had when List began: List never goes back in time,
// not behind an acknowledged Append nor a finished Delete.
func (s *Store) List(ctx context.Context, q storage.Query) ([]storage.Entry, error) {
	if !validName(q.Src) || (q.Stream != "" && !validName(q.Stream)) {
		return nil, fmt.Errorf("list: %w: source %q, stream %q", storage.ErrInvalid, q.Src, q.Stream)
	}
	if err := s.precheck(ctx); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	if q.Last == 0 || q.After == math.MaxUint64 {
		return nil, nil
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	p := s.partitionFor(q.Src)
	filter := p.sourceFilter(q.Src)
	if q.Stream != "" {
		filter = p.entrySubject(q.Src, q.Stream)
	}
	fence, err := s.fence(ctx, p)
	if err != nil || fence == 0 {
		return nil, wrapRead("list", err)
	}
	start := q.After + 1
	want := q.Limit // <= 0: no limit
	if q.Last > 0 {
		if start, err = s.lastStart(ctx, p, filter, start, q.Last); err != nil {
			return nil, wrapRead("list", err)
		}
		if want <= 0 || want > q.Last {
			want = q.Last
		}
	}
	var out []storage.Entry
	for want <= 0 || len(out) < want {
		n := maxBatch
		if want > 0 {
			n = min(n, want-len(out))
		}
		msgs, more, err := s.directBatch(ctx, p, dgRequest{Seq: start, NextFor: filter, Batch: n})
		if err != nil {
			return nil, wrapRead("list", err)
		}
		for _, m := range msgs {
			e, err := decodeDirect(p, m)
			if err != nil {
				return nil, fmt.Errorf("list: %w", err)
			}
			out = append(out, e)
			start = e.Seq + 1
		}
		if len(msgs) == 0 || more == 0 {
			break
		}
	}
	return out, nil
}

// Head returns the highest sequence ever acknowledged for src (0: none),
// including entries since deleted (Delete leaves a marker holding it) but
// not those removed by the stream's limits.
func (s *Store) Head(ctx context.Context, src string) (uint64, error) {
	if !validName(src) {
		return 0, fmt.Errorf("head: %w: source %q", storage.ErrInvalid, src)
	}
	if err := s.precheck(ctx); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	h, err := s.head(ctx, s.partitionFor(src), src)
	return h, wrapRead("head", err)
}

func (s *Store) head(ctx context.Context, p *partition, src string) (uint64, error) {
	fence, err := s.fence(ctx, p)
	if err != nil || fence == 0 {
		return 0, err
	}
	last, err := s.directOne(ctx, p, dgRequest{LastFor: p.sourceFilter(src)})
	if err != nil {
		return 0, err
	}
	var head uint64
	if last != nil {
		if head, err = headerSeq(last); err != nil {
			return 0, err
		}
	}
	marker, err := s.directOne(ctx, p, dgRequest{LastFor: p.headSubject(src)})
	if err != nil || marker == nil {
		return head, err
	}
	h, err := storage.ParseID(string(marker.Data))
	if err != nil {
		return 0, fmt.Errorf("head marker of %q: %w", src, errCorrupt)
	}
	return max(head, h), nil
}

// Delete removes every entry of src in stream, after every append issued
// through this store before the call is complete. It purges the stream's
// subject (in chunks of at most PurgeChunk entries) and then writes a
// marker holding the source's head, so Head and sequences are unchanged.
// If ctx ends first it returns ctx's error; the delete may still happen.
func (s *Store) Delete(ctx context.Context, src, stream string) error {
	if err := checkNames(src, stream); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.precheck(ctx); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.pub.waitFor(ctx); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	p := s.partitionFor(src)
	head, err := s.head(ctx, p, src)
	if err != nil {
		return wrapRead("delete", err)
	}
	subj := p.entrySubject(src, stream)
	for {
		first, n, err := s.count(ctx, p, subj, 1)
		if err != nil {
			return wrapRead("delete", err)
		}
		if n == 0 {
			break
		}
		if n <= uint64(s.opts.PurgeChunk) {
			// The last chunk: no upper bound, so that nothing stays behind.
			if err := s.purge(ctx, p, subj, 0); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			break
		}
		// Keep the final n-PurgeChunk entries for the next round.
		upto, err := s.lastStart(ctx, p, subj, first, int(n)-s.opts.PurgeChunk)
		if err != nil {
			return wrapRead("delete", err)
		}
		if err := s.purge(ctx, p, subj, upto); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
	}
	if head == 0 {
		return nil
	}
	if err := s.writeMarker(ctx, p, src, head); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// purge removes the messages of subj below sequence upto (0: all).
func (s *Store) purge(ctx context.Context, p *partition, subj string, upto uint64) error {
	body, _ := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq,omitempty"`
	}{subj, upto})
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	return retry(ctx, func() error {
		m, err := s.request(ctx, "$JS.API.STREAM.PURGE."+p.name, body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("purge %s: %w", p.name, err)
		}
		if resp.Error != nil {
			err := fmt.Errorf("purge %s: %d %s", p.name, resp.Error.Code, resp.Error.Description)
			if resp.Error.Code == 503 {
				err = fmt.Errorf("%w: %w", errUnavailable, err)
			}
			return err
		}
		return nil
	})
}

// writeMarker publishes src's head marker and waits for its acknowledgement.
func (s *Store) writeMarker(ctx context.Context, p *partition, src string, head uint64) error {
	m := nats.NewMsg(p.headSubject(src))
	m.Header.Set(nats.MsgIdHdr, s.pub.idBase+"h"+strconv.FormatUint(s.markers.Add(1), 10))
	m.Header.Set("Nats-Expected-Stream", p.name)
	m.Data = []byte(storage.FormatID(head))
	return retry(ctx, func() error {
		actx, cancel := context.WithTimeout(ctx, max(s.opts.AckWait, minReadWait))
		defer cancel()
		if _, err := s.js.PublishMsg(actx, m); err != nil {
			// Same message id: a retry after a lost acknowledgement
			// stores it once.
			return fmt.Errorf("%w: head marker: %w", errUnavailable, err)
		}
		return nil
	})
}

// fence returns the sequence of the last message the stream leader holds
// (0: the stream is empty) once the replica that answers this node's
// direct gets holds it too. Reads after it see every entry acknowledged
// and every purge done before fence was called.
func (s *Store) fence(ctx context.Context, p *partition) (uint64, error) {
	var last uint64
	err := retry(ctx, func() error {
		var err error
		if last, err = s.leaderLast(ctx, p); err != nil || last == 0 {
			return err
		}
		m, err := s.directOne(ctx, p, dgRequest{Seq: last})
		if err != nil {
			return err
		}
		if m == nil {
			// This replica lags (or a purge removed the message since).
			return fmt.Errorf("%w: replica behind sequence %d", errUnavailable, last)
		}
		return nil
	})
	return last, err
}

// leaderLast asks the stream leader for the sequence of its last message.
func (s *Store) leaderLast(ctx context.Context, p *partition) (uint64, error) {
	body, _ := json.Marshal(dgRequest{LastFor: p.prefix + ".>"})
	m, err := s.request(ctx, "$JS.API.STREAM.MSG.GET."+p.name, body)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("last message of %s: %w", p.name, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return 0, nil
	case resp.Error != nil:
		err := fmt.Errorf("last message of %s: %d %s", p.name, resp.Error.Code, resp.Error.Description)
		if resp.Error.Code == 503 {
			err = fmt.Errorf("%w: %w", errUnavailable, err)
		}
		return 0, err
	case resp.Message == nil:
		return 0, fmt.Errorf("last message of %s: empty answer", p.name)
	}
	return resp.Message.Seq, nil
}

// count returns the first message of subj (a filter) at or after seq and
// how many there are from it on (first 0, n 0: none).
func (s *Store) count(ctx context.Context, p *partition, subj string, seq uint64) (first, n uint64, err error) {
	msgs, more, err := s.directBatch(ctx, p, dgRequest{Seq: seq, NextFor: subj, Batch: 1})
	if err != nil || len(msgs) == 0 {
		return 0, 0, err
	}
	first, err = headerSeq(msgs[0])
	return first, more + 1, err
}

// lastStart returns the sequence of the last'th final message of filter at
// or after lo (lo itself if there are at most last). The direct get API
// has no reverse scan, so it bisects the sequence range on the pending
// counts that batch gets report: about log2(range) requests.
func (s *Store) lastStart(ctx context.Context, p *partition, filter string, lo uint64, last int) (uint64, error) {
	first, n, err := s.count(ctx, p, filter, lo)
	if err != nil || n <= uint64(last) {
		return lo, err
	}
	lm, err := s.directOne(ctx, p, dgRequest{LastFor: filter})
	if err != nil {
		return 0, err
	}
	if lm == nil {
		return lo, nil
	}
	end, err := headerSeq(lm)
	if err != nil {
		return 0, err
	}
	// Invariant: count(lo) >= last > count(hi).
	lo, hi := first, end+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		m, c, err := s.count(ctx, p, filter, mid)
		if err != nil {
			return 0, err
		}
		if c >= uint64(last) {
			lo = m
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// dgRequest is the body of a JetStream direct get.
type dgRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// directOne sends a single direct get; nil, nil means no such message.
func (s *Store) directOne(ctx context.Context, p *partition, req dgRequest) (*nats.Msg, error) {
	body, _ := json.Marshal(req)
	m, err := s.request(ctx, "$JS.API.DIRECT.GET."+p.name, body)
	if err != nil {
		return nil, err
	}
	switch st := m.Header.Get("Status"); st {
	case "":
		return m, nil
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("direct get from %s: status %s %s", p.name, st, m.Header.Get("Description"))
	}
}

// directBatch sends a batch direct get and returns its messages and the
// number of matching messages after them on the replica that answered.
func (s *Store) directBatch(ctx context.Context, p *partition, req dgRequest) (msgs []*nats.Msg, more uint64, err error) {
	body, _ := json.Marshal(req)
	err = retry(ctx, func() error {
		msgs, more = msgs[:0], 0
		id, ch, err := s.reads.start("$JS.API.DIRECT.GET."+p.name, body, req.Batch+2)
		if err != nil {
			return transient(err)
		}
		defer s.reads.end(id)
		wait := max(s.opts.AckWait, minReadWait)
		t := time.NewTimer(wait)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return fmt.Errorf("%w: direct get from %s: no answer within %v", errUnavailable, p.name, wait)
			case m := <-ch:
				switch st := m.Header.Get("Status"); st {
				case "":
					msgs = append(msgs, m)
				case "204": // end of batch
					more, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
					return nil
				case "404":
					return nil
				case "503":
					return fmt.Errorf("%w: direct get from %s: no responders", errUnavailable, p.name)
				default:
					return fmt.Errorf("direct get from %s: status %s %s", p.name, st, m.Header.Get("Description"))
				}
			}
		}
	})
	return msgs, more, err
}

func headerSeq(m *nats.Msg) (uint64, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("direct get answer without sequence: %w", errCorrupt)
	}
	return seq, nil
}

func decodeDirect(p *partition, m *nats.Msg) (storage.Entry, error) {
	seq, err := headerSeq(m)
	if err != nil {
		return storage.Entry{}, err
	}
	src, stream, err := p.parseEntrySubject(m.Header.Get("Nats-Subject"))
	if err != nil {
		return storage.Entry{}, err
	}
	ts, msg, err := decodeValue(m.Data)
	if err != nil {
		return storage.Entry{}, err
	}
	return storage.Entry{Seq: seq, Src: src, Stream: stream, Timestamp: ts, Msg: msg}, nil
}

// request sends a request that has one answer, asking again while no
// server answers (no responders, or none within the attempt's wait) until
// ctx ends. Requests that change state must be idempotent.
func (s *Store) request(ctx context.Context, subj string, body []byte) (*nats.Msg, error) {
	var m *nats.Msg
	err := retry(ctx, func() error {
		actx, cancel := context.WithTimeout(ctx, max(s.opts.AckWait, minReadWait))
		defer cancel()
		var err error
		m, err = s.nc.RequestWithContext(actx, subj, body)
		if err != nil && ctx.Err() == nil {
			return transient(err)
		}
		return err
	})
	return m, err
}

// readContext bounds a read by Options.ReadTimeout.
func (s *Store) readContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.ReadTimeout)
}

// transient marks errors of a request that a retry may fix.
func transient(err error) error {
	if errors.Is(err, errUnavailable) {
		return err
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	return err
}

// retry calls fn until it succeeds, fails with an error other than
// errUnavailable, or ctx ends, waiting a little longer each time.
func retry(ctx context.Context, fn func() error) error {
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil || !errors.Is(err, errUnavailable) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// wrapRead wraps a read error once, with the operation.
func wrapRead(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// mux routes the replies of direct gets, which may be many per request,
// through one wildcard subscription.
type mux struct {
	nc    *nats.Conn
	inbox string
	sub   *nats.Subscription

	mu    sync.Mutex
	next  uint64
	calls map[uint64]chan *nats.Msg
}

func newMux(nc *nats.Conn) (*mux, error) {
	m := &mux{nc: nc, inbox: nc.NewRespInbox(), calls: map[uint64]chan *nats.Msg{}}
	sub, err := nc.Subscribe(m.inbox+".*", m.route)
	if err != nil {
		return nil, fmt.Errorf("subscribe to replies: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to replies: %w", err)
	}
	m.sub = sub
	return m, nil
}

// start publishes a request whose replies go to the returned channel,
// which has room for capacity of them; end must follow.
func (m *mux) start(subject string, body []byte, capacity int) (uint64, chan *nats.Msg, error) {
	ch := make(chan *nats.Msg, capacity)
	m.mu.Lock()
	m.next++
	id := m.next
	m.calls[id] = ch
	m.mu.Unlock()
	if err := m.nc.PublishRequest(subject, m.inbox+"."+strconv.FormatUint(id, 10), body); err != nil {
		m.end(id)
		return 0, nil, err
	}
	return id, ch, nil
}

func (m *mux) end(id uint64) {
	m.mu.Lock()
	delete(m.calls, id)
	m.mu.Unlock()
}

func (m *mux) route(msg *nats.Msg) {
	i := strings.LastIndexByte(msg.Subject, '.')
	id, err := strconv.ParseUint(msg.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	m.mu.Lock()
	ch := m.calls[id]
	m.mu.Unlock()
	if ch != nil {
		select {
		case ch <- msg:
		default: // more replies than asked for: the reader sees the batch cut short
		}
	}
}

func (m *mux) close() {
	if m != nil && m.sub != nil {
		m.sub.Unsubscribe()
	}
}
