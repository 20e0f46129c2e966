package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/logbroker/logbroker/storage"
)

// Sources returns the sources q selects that have at least one entry, or
// had one since deleted (then Empty is set, and LastSeq is the source's
// head). It lists the entry subjects of every partition from the stream
// leaders (stream info with a subject filter, paged), then asks the
// leader for the last message of each stream of each source listed
// (maxCatalogGets at a time): its cost grows with the number of sources in
// the store, not with entries.
func (s *Store) Sources(ctx context.Context, q storage.SourceQuery) ([]storage.SourceInfo, error) {
	if err := s.precheck(ctx); err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	type source struct {
		p       *partition
		streams []string // entry subjects
	}
	bySrc := map[string]*source{}
	for _, p := range s.parts {
		subjects, err := s.subjects(ctx, p, p.prefix+"."+kindEntry+".>")
		if err != nil {
			return nil, wrapRead("sources", err)
		}
		for subj := range subjects {
			src, _, err := p.parseEntrySubject(subj)
			if err != nil {
				return nil, fmt.Errorf("sources: %w", err)
			}
			if !strings.HasPrefix(src, q.Prefix) || src <= q.After {
				continue
			}
			x := bySrc[src]
			if x == nil {
				x = &source{p: p}
				bySrc[src] = x
			}
			x.streams = append(x.streams, subj)
		}
	}
	names := make([]string, 0, len(bySrc))
	for src := range bySrc {
		names = append(names, src)
	}
	slices.Sort(names)
	var out []storage.SourceInfo
	for len(names) > 0 && (q.Limit <= 0 || len(out) < q.Limit) {
		// Describe as many sources as are still wanted, their gets in
		// parallel; one may turn out to hold nothing and need a next.
		n := len(names)
		if q.Limit > 0 {
			n = min(n, q.Limit-len(out))
		}
		batch := names[:n]
		names = names[n:]
		var reqs []leaderReq
		for _, src := range batch {
			for _, subj := range bySrc[src].streams {
				reqs = append(reqs, leaderReq{bySrc[src].p, dgRequest{LastFor: subj}})
			}
		}
		lasts, err := s.leaderGets(ctx, reqs)
		if err != nil {
			return nil, wrapRead("sources", err)
		}
		for _, src := range batch {
			x := bySrc[src]
			info, ok, err := describeSource(x.p, src, lasts[:len(x.streams)])
			lasts = lasts[len(x.streams):]
			if err != nil {
				return nil, fmt.Errorf("sources: %w", err)
			}
			if ok {
				out = append(out, info)
			}
		}
	}
	return out, nil
}

// describeSource returns what the last messages of src's streams tell:
// its latest entry, or, when only tombstones are left, its head (Empty);
// ok is false if nothing is left at all.
func describeSource(p *partition, src string, lasts []*storedMsg) (info storage.SourceInfo, ok bool, err error) {
	info.Src = src
	var head uint64
	for _, last := range lasts {
		if last == nil {
			continue // purged since the subjects were listed
		}
		e, tomb, err := last.entry(p)
		if err != nil {
			return info, false, err
		}
		if tomb {
			h, err := last.head()
			if err != nil {
				return info, false, err
			}
			head = max(head, h)
			continue
		}
		if e.Seq > info.LastSeq {
			info.LastSeq, info.LastTimestamp = e.Seq, e.Timestamp
		}
	}
	if info.LastSeq == 0 {
		if head == 0 {
			return info, false, nil
		}
		info.LastSeq, info.Empty = head, true
	}
	return info, true, nil
}

// Streams returns the streams of src that hold entries, by name, each with
// its entry count and latest entry. Counts come from the stream leader's
// per-subject message counts, less the tombstone a Delete left at the
// start of the subject: three leader requests per stream, in parallel.
func (s *Store) Streams(ctx context.Context, src string) ([]storage.StreamInfo, error) {
	if !validName(src) {
		return nil, fmt.Errorf("streams: %w: source %q", storage.ErrInvalid, src)
	}
	if err := s.precheck(ctx); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	ctx, cancel := s.readContext(ctx)
	defer cancel()
	p := s.partitionFor(src)
	subjects, err := s.subjects(ctx, p, p.sourceFilter(src))
	if err != nil {
		return nil, wrapRead("streams", err)
	}
	// The last and the first message of every subject, in parallel.
	subjs := make([]string, 0, len(subjects))
	var reqs []leaderReq
	for subj := range subjects {
		subjs = append(subjs, subj)
		reqs = append(reqs, leaderReq{p, dgRequest{LastFor: subj}}, leaderReq{p, dgRequest{NextFor: subj, Seq: 1}})
	}
	msgs, err := s.leaderGets(ctx, reqs)
	if err != nil {
		return nil, wrapRead("streams", err)
	}
	var out []storage.StreamInfo
	for i, subj := range subjs {
		n := subjects[subj]
		_, stream, err := p.parseEntrySubject(subj)
		if err != nil {
			return nil, fmt.Errorf("streams: %w", err)
		}
		last, first := msgs[2*i], msgs[2*i+1]
		if last == nil {
			continue // purged since the subjects were listed
		}
		e, tomb, err := last.entry(p)
		if err != nil {
			return nil, fmt.Errorf("streams: %w", err)
		}
		if tomb {
			continue // deleted, nothing appended since
		}
		if first != nil {
			if _, tomb, err := first.entry(p); err != nil {
				return nil, fmt.Errorf("streams: %w", err)
			} else if tomb && n > 0 {
				n--
			}
		}
		out = append(out, storage.StreamInfo{Stream: stream, Count: int64(n), LastSeq: e.Seq, LastTimestamp: e.Timestamp})
	}
	slices.SortFunc(out, func(a, b storage.StreamInfo) int { return strings.Compare(a.Stream, b.Stream) })
	return out, nil
}

// leaderReq is one leaderGet of leaderGets.
type leaderReq struct {
	p   *partition
	req dgRequest
}

// maxCatalogGets bounds the leader requests a Sources or Streams call has
// in flight.
const maxCatalogGets = 16

// leaderGets runs leaderGet for every request, at most maxCatalogGets at
// a time, and returns their answers in order (nil: no such message).
func (s *Store) leaderGets(ctx context.Context, reqs []leaderReq) ([]*storedMsg, error) {
	out := make([]*storedMsg, len(reqs))
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, maxCatalogGets)
	var wg sync.WaitGroup
	for i, r := range reqs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = s.leaderGet(ctx, r.p, r.req)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// subjects returns the subjects of p matching filter with their message
// counts, from the stream leader, paging through stream info.
func (s *Store) subjects(ctx context.Context, p *partition, filter string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for {
		body, _ := json.Marshal(struct {
			Filter string `json:"subjects_filter"`
			Offset int    `json:"offset,omitempty"`
		}{filter, len(out)})
		var resp struct {
			State struct {
				Subjects map[string]uint64 `json:"subjects"`
			} `json:"state"`
			Total int       `json:"total"`
			Error *apiError `json:"error"`
		}
		err := retry(ctx, func() error {
			m, err := s.request(ctx, "$JS.API.STREAM.INFO."+p.name, body)
			if err != nil {
				return err
			}
			resp.State.Subjects, resp.Error = nil, nil
			if err := json.Unmarshal(m.Data, &resp); err != nil {
				return fmt.Errorf("info of %s: %w", p.name, err)
			}
			return resp.Error.err("info of " + p.name)
		})
		if err != nil {
			return nil, err
		}
		for subj, n := range resp.State.Subjects {
			out[subj] = n
		}
		if len(resp.State.Subjects) == 0 || len(out) >= resp.Total {
			return out, nil
		}
	}
}
