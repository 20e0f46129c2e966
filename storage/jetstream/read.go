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
	"github.com/nats-io/nats.go/jetstream"

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

// List returns the entries q selects (PROTOCOL §5). It reads with batched
// direct gets, answered by whichever replica is nearest, and checks the
// answer against the stream leader (see doc.go, "Reads"): List never goes
// back in time, not behind an acknowledged Append nor a finished Delete.
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
	r := reader{s: s, p: p, filter: p.sourceFilter(q.Src), from: q.After + 1, keep: q.Filter.Prepared()}
	if q.Stream != "" {
		r.filter = p.entrySubject(q.Src, q.Stream)
	}
	// The fence: the last message of the filter the leader holds now.
	last, err := s.leaderGet(ctx, p, dgRequest{LastFor: r.filter})
	if err != nil {
		return nil, wrapRead("list", err)
	}
	if last == nil || last.Seq <= q.After {
		return nil, nil
	}
	r.fence = last.Seq
	if r.keep != nil {
		// Filtered: one pass forward over (After, fence], keeping what
		// passes: the first Limit, or the final Last (there is no reverse
		// scan to find them from the end).
		want := q.Limit
		if q.Last > 0 {
			want, r.last = 0, q.Last
		}
		out, err := r.read(ctx, r.from, want)
		if err != nil {
			return nil, wrapRead("list", err)
		}
		if q.Last > 0 && len(out) > q.Last {
			out = out[len(out)-q.Last:]
		}
		if q.Limit > 0 && len(out) > q.Limit {
			out = out[:q.Limit]
		}
		return out, nil
	}
	if q.Last < 0 {
		out, err := r.read(ctx, r.from, q.Limit)
		return out, wrapRead("list", err)
	}
	// Last: find where the final Last begin, read from there to the end,
	// and widen the search while tombstones or purged entries that a
	// lagging replica still counted leave fewer than Last.
	k := q.Last
	for {
		start, err := s.lastStart(ctx, p, r.filter, r.from, k)
		if err != nil {
			return nil, wrapRead("list", err)
		}
		out, err := r.read(ctx, start, 0)
		if err != nil {
			return nil, wrapRead("list", err)
		}
		if len(out) >= q.Last || start <= r.from {
			out = out[max(0, len(out)-q.Last):]
			if q.Limit > 0 && len(out) > q.Limit {
				out = out[:q.Limit]
			}
			return out, nil
		}
		k += q.Last - len(out)
	}
}

// reader reads the entries of one filter from a replica and checks them
// against the leader.
type reader struct {
	s      *Store
	p      *partition
	filter string
	from   uint64 // the query's first sequence (after + 1)
	fence  uint64 // the leader's last message of filter when the read began
	// The leader's first message at or after from, per subject: what a
	// lagging replica lists below it was purged (by Delete or the limits).
	first map[string]uint64
	// keep, if not nil, filters the entries read (Query.Filter); with
	// last > 0, read keeps only about the final last of them.
	keep *storage.Filter
	last int
}

// cut returns the first want of out (all if want <= 0).
func (r *reader) cut(out []storage.Entry, want int) []storage.Entry {
	if want > 0 && len(out) > want {
		return out[:want]
	}
	return out
}

// filterInto appends the entries of got that r keeps to out, and drops
// all but the final r.last of out now and then.
func (r *reader) filterInto(out, got []storage.Entry) []storage.Entry {
	if r.keep == nil {
		return append(out, got...)
	}
	for i := range got {
		if r.keep.Keep(&got[i]) {
			out = append(out, got[i])
		}
	}
	if r.last > 0 && len(out) > 2*r.last+maxBatch {
		n := copy(out, out[len(out)-r.last:])
		clear(out[n:])
		out = out[:n]
	}
	return out
}

// read returns the entries of r.filter from sequence seq on (at most want;
// <= 0: all), tombstones left out. A replica's answer that reaches the
// fence reflects every append and purge up to it. An answer cut short by
// its batch size before the fence may still hold entries a purge removed:
// those below the leader's first message of their subject are dropped.
// An answer that ends before the fence comes from a lagging replica: read
// on from where it stopped, after a pause, until some replica reaches it.
func (r *reader) read(ctx context.Context, seq uint64, want int) ([]storage.Entry, error) {
	var out []storage.Entry
	wait, behind := time.Millisecond, 0
	for want <= 0 || len(out) < want {
		n := maxBatch
		if want > 0 && r.keep == nil {
			n = min(n, want-len(out))
		}
		msgs, more, err := r.s.directBatch(ctx, r.p, dgRequest{Seq: seq, NextFor: r.filter, Batch: n})
		if err != nil {
			return nil, err
		}
		reached := seq > r.fence
		var got []storage.Entry
		for _, m := range msgs {
			e, tomb, err := decodeDirect(r.p, m)
			if err != nil {
				return nil, err
			}
			seq = e.Seq + 1
			reached = reached || e.Seq >= r.fence
			if !tomb {
				got = append(got, e)
			}
		}
		if !reached {
			if got, err = r.dropPurged(ctx, got); err != nil {
				return nil, err
			}
		}
		out = r.filterInto(out, got)
		ended := len(msgs) < n || more == 0
		switch {
		case ended && reached:
			return r.cut(out, want), nil
		case ended && behind < leaderAfter:
			// This replica is behind the fence: ask again.
			behind++
			if err := pause(ctx, &wait); err != nil {
				return nil, fmt.Errorf("%w: replica behind sequence %d", err, r.fence)
			}
		case ended:
			// Still behind (the replica this node reaches may be catching
			// up after a restart): take the rest up to the fence from the
			// leader, one message per request.
			rest := want - len(out)
			if r.keep != nil {
				rest = 0 // want counts entries that pass: read up to the fence
			}
			got, next, err := r.fromLeader(ctx, seq, rest)
			if err != nil {
				return nil, err
			}
			out, seq = r.filterInto(out, got), next
			if seq <= r.fence {
				return r.cut(out, want), nil // the leader has no more, or want is met
			}
		}
	}
	return out[:want], nil
}

// leaderAfter is how many times read asks replicas again before it reads
// from the leader.
const leaderAfter = 5

// fromLeader reads the entries of r.filter from seq up to the fence (at
// most want; <= 0: all) from the stream leader, and returns them with the
// sequence to go on from.
func (r *reader) fromLeader(ctx context.Context, seq uint64, want int) ([]storage.Entry, uint64, error) {
	var out []storage.Entry
	for seq <= r.fence && (want <= 0 || len(out) < want) {
		m, err := r.s.leaderGet(ctx, r.p, dgRequest{Seq: seq, NextFor: r.filter})
		if err != nil || m == nil {
			return out, seq, err
		}
		seq = m.Seq + 1
		e, tomb, err := m.entry(r.p)
		if err != nil {
			return nil, 0, err
		}
		if !tomb {
			out = append(out, e)
		}
	}
	return out, seq, nil
}

// dropPurged removes the entries the leader no longer has: below its
// first message (at or after r.from) of their subject.
func (r *reader) dropPurged(ctx context.Context, es []storage.Entry) ([]storage.Entry, error) {
	out := es[:0]
	for _, e := range es {
		subj := r.p.entrySubject(e.Src, e.Stream)
		first, ok := r.first[subj]
		if !ok {
			m, err := r.s.leaderGet(ctx, r.p, dgRequest{Seq: r.from, NextFor: subj})
			if err != nil {
				return nil, err
			}
			first = math.MaxUint64
			if m != nil {
				first = m.Seq
			}
			if r.first == nil {
				r.first = map[string]uint64{}
			}
			r.first[subj] = first
		}
		if e.Seq >= first {
			out = append(out, e)
		}
	}
	return out, nil
}

// pause waits *wait (doubling it, up to 100 ms) or until ctx ends.
func pause(ctx context.Context, wait *time.Duration) error {
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	*wait = min(2**wait, 100*time.Millisecond)
	return nil
}

// Head returns the highest sequence ever acknowledged for src (0: none),
// including entries since deleted (Delete's tombstone holds it) but not
// those removed by the stream's limits. It asks the stream leader.
func (s *Store) Head(ctx context.Context, src string) (uint64, error) {
	if !validName(src) {
		return 0, fmt.Errorf("head: %w: source %q", storage.ErrInvalid, src)
	}
	if err := s.precheck(ctx); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	p := s.partitionFor(src)
	last, err := s.leaderGet(ctx, p, dgRequest{LastFor: p.sourceFilter(src)})
	if err != nil {
		return 0, wrapRead("head", err)
	}
	h, err := last.head()
	return h, wrapRead("head", err)
}

// Delete removes every entry of src in stream, after every append issued
// through this store before the call is complete. It purges the stream's
// subject with one request and then writes a tombstone on it holding the
// source's head, so Head and sequences are unchanged. If ctx ends first it returns ctx's error; the delete may
// still happen.
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
	srcFilter, subj := p.sourceFilter(src), p.entrySubject(src, stream)
	before, err := s.leaderGet(ctx, p, dgRequest{LastFor: srcFilter})
	if err != nil {
		return wrapRead("delete", err)
	}
	if before == nil {
		return nil // nothing was ever stored for src
	}
	if last, err := s.leaderGet(ctx, p, dgRequest{LastFor: subj}); err != nil {
		return wrapRead("delete", err)
	} else if last == nil {
		return nil // no such stream: nothing to purge, no tombstone
	}
	head, err := before.head()
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.purge(ctx, p, subj, 0); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := s.writeTombstone(ctx, p, src, subj, head); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	s.deletes.Add(1)
	return nil
}

// purge removes the messages of subj below sequence upto (0: all).
func (s *Store) purge(ctx context.Context, p *partition, subj string, upto uint64) error {
	body, _ := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq,omitempty"`
	}{subj, upto})
	var resp struct {
		Success bool      `json:"success"`
		Error   *apiError `json:"error"`
	}
	return retry(ctx, func() error {
		m, err := s.request(ctx, "$JS.API.STREAM.PURGE."+p.name, body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("purge %s: %w", p.name, err)
		}
		return resp.Error.err("purge " + p.name)
	})
}

// writeTombstone publishes the tombstone of a deleted stream: on its
// subject, holding the head of src. Appends to other streams of src may
// race the delete, so the tombstone holds the larger of head (before the
// purge) and the source's last message now, and is published only if src
// got nothing since (expected last subject sequence), else computed again.
func (s *Store) writeTombstone(ctx context.Context, p *partition, src, subj string, head uint64) error {
	id := s.pub.idBase + "t" + strconv.FormatUint(s.markers.Add(1), 10)
	srcFilter := p.sourceFilter(src)
	for {
		last, err := s.leaderGet(ctx, p, dgRequest{LastFor: srcFilter})
		if err != nil {
			return err
		}
		var lastSeq uint64
		if last != nil {
			h, err := last.head()
			if err != nil {
				return err
			}
			head, lastSeq = max(head, h), last.Seq
		}
		m := nats.NewMsg(subj)
		m.Header.Set(nats.MsgIdHdr, id)
		m.Header.Set("Nats-Expected-Stream", p.name)
		m.Header.Set(hdrTombstone, "1")
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(lastSeq, 10))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", srcFilter)
		m.Data = []byte(storage.FormatID(head))
		var raced bool
		err = retry(ctx, func() error {
			actx, cancel := context.WithTimeout(ctx, max(s.opts.AckWait, minReadWait))
			defer cancel()
			_, err := s.js.PublishMsg(actx, m)
			var apiErr *jetstream.APIError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
				raced = true
				return nil
			case errors.As(err, &apiErr) && apiErr.Code != 503 && apiErr.ErrorCode != errCodeDupInProcess:
				return fmt.Errorf("tombstone: %w", err)
			}
			// Same message id: a retry after a lost acknowledgement
			// stores it once.
			return fmt.Errorf("%w: tombstone: %w", errUnavailable, err)
		})
		if err != nil || !raced {
			return err
		}
		id = s.pub.idBase + "t" + strconv.FormatUint(s.markers.Add(1), 10)
	}
}

// hdrTombstone marks the message a Delete leaves on a stream's subject.
const hdrTombstone = "Logbroker-Tombstone"

// storedMsg is a message as the stream leader returns it.
type storedMsg struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Hdrs    []byte `json:"hdrs"`
	Data    []byte `json:"data"`
}

// seq returns m's sequence; nil means 0.
func (m *storedMsg) seq() uint64 {
	if m == nil {
		return 0
	}
	return m.Seq
}

// head returns the source head m implies: a tombstone holds it, an entry
// is it; nil means 0.
func (m *storedMsg) head() (uint64, error) {
	if m == nil {
		return 0, nil
	}
	if len(m.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Hdrs)
		if err != nil {
			return 0, fmt.Errorf("message %d: %w", m.Seq, errCorrupt)
		}
		if h.Get(hdrTombstone) != "" {
			v, err := storage.ParseID(string(m.Data))
			if err != nil {
				return 0, fmt.Errorf("tombstone %d: %w", m.Seq, errCorrupt)
			}
			return v, nil
		}
	}
	return m.Seq, nil
}

// entry decodes m, an entry or a tombstone of p.
func (m *storedMsg) entry(p *partition) (e storage.Entry, tombstone bool, err error) {
	src, stream, err := p.parseEntrySubject(m.Subject)
	if err != nil {
		return storage.Entry{}, false, err
	}
	if len(m.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Hdrs)
		if err != nil {
			return storage.Entry{}, false, fmt.Errorf("message %d: %w", m.Seq, errCorrupt)
		}
		if h.Get(hdrTombstone) != "" {
			return storage.Entry{Seq: m.Seq, Src: src, Stream: stream}, true, nil
		}
	}
	ts, level, msg, err := decodeValue(m.Data)
	if err != nil {
		return storage.Entry{}, false, err
	}
	return storage.Entry{Seq: m.Seq, Src: src, Stream: stream, Timestamp: ts, Msg: msg, Level: level}, false, nil
}

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// err returns nil for a nil e, else an error naming op, wrapping
// errUnavailable for a 503.
func (e *apiError) err(op string) error {
	if e == nil {
		return nil
	}
	err := fmt.Errorf("%s: %d %s", op, e.Code, e.Description)
	if e.Code == 503 {
		err = fmt.Errorf("%w: %w", errUnavailable, err)
	}
	return err
}

// JetStream error codes of a message get.
const (
	errCodeNoMessage      = 10037 // no message found
	errCodeStreamNotFound = 10059
)

// leaderGet asks the stream leader (not a replica) for one message;
// nil, nil means there is none.
func (s *Store) leaderGet(ctx context.Context, p *partition, req dgRequest) (*storedMsg, error) {
	body, _ := json.Marshal(req)
	var resp struct {
		Message *storedMsg `json:"message"`
		Error   *apiError  `json:"error"`
	}
	err := retry(ctx, func() error {
		m, err := s.request(ctx, "$JS.API.STREAM.MSG.GET."+p.name, body)
		if err != nil {
			return err
		}
		resp.Message, resp.Error = nil, nil
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("get from %s: %w", p.name, err)
		}
		switch {
		case resp.Error == nil:
		case resp.Error.ErrCode == errCodeNoMessage:
			resp.Error = nil
		case resp.Error.ErrCode == errCodeStreamNotFound:
			// The meta leader answers this while it has not applied the
			// stream's creation yet (its apply lags under load): the
			// stream leader, which the request also reaches, may answer
			// with the message. The store made its streams: ask again.
			return fmt.Errorf("%w: %w", errUnavailable, resp.Error.err("get from "+p.name))
		}
		return resp.Error.err("get from " + p.name)
	})
	if err != nil {
		return nil, err
	}
	return resp.Message, nil
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

func decodeDirect(p *partition, m *nats.Msg) (e storage.Entry, tombstone bool, err error) {
	seq, err := headerSeq(m)
	if err != nil {
		return storage.Entry{}, false, err
	}
	src, stream, err := p.parseEntrySubject(m.Header.Get("Nats-Subject"))
	if err != nil {
		return storage.Entry{}, false, err
	}
	if m.Header.Get(hdrTombstone) != "" {
		return storage.Entry{Seq: seq, Src: src, Stream: stream}, true, nil
	}
	ts, level, msg, err := decodeValue(m.Data)
	if err != nil {
		return storage.Entry{}, false, err
	}
	return storage.Entry{Seq: seq, Src: src, Stream: stream, Timestamp: ts, Msg: msg, Level: level}, false, nil
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
