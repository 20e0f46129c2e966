package rpc

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// Console capture (PROTOCOL §8): a stock Mongoose OS device with
// debug.stdout_topic set publishes every console write as
// "<device_id> <seq> <time> <n>|<text>". Capture joins the writes of one
// source and stream into lines and stores each line as an entry, through
// the same LogStore.AppendAsync as Log.Log.

// CaptureConfig holds the settings of console capture. Zero values take the
// defaults below.
type CaptureConfig struct {
	// Levels reads <n> as the line's log level (mqtt.debug_use_log_level)
	// instead of a file descriptor: every line goes to "console".
	Levels bool
	// FlushAfter is how long a partial line waits for its continuation
	// before it is stored as it is; default 1 s.
	FlushAfter time.Duration
	// MaxLine bounds a partial line in bytes: one that grows past it is
	// stored as it is; default 8 KiB.
	MaxLine int
	// MaxSources bounds the sources whose counts and partial lines are
	// kept; past it, new sources are stored write by write, uncounted.
	// Default 100000.
	MaxSources int
	// MaxPartials bounds the partial lines buffered at once, across all
	// sources; past it, a write's unfinished line is stored at once.
	// Default 4096.
	MaxPartials int
	// Rate bounds the messages captured per second of one source (a token
	// bucket of RateBurst); the sources past MaxSources share one bucket.
	// Messages over it are dropped and counted. Zero: the service's
	// Config.Rate and RateBurst (--rate, --rate-burst); negative: no limit.
	Rate      float64
	RateBurst int
}

// Defaults of CaptureConfig.
const (
	DefaultCaptureFlush       = time.Second
	DefaultCaptureMaxLine     = 8 << 10
	DefaultCaptureMaxSources  = 100000
	DefaultCaptureMaxPartials = 4096
)

func (c *CaptureConfig) setDefaults() {
	if c.FlushAfter <= 0 {
		c.FlushAfter = DefaultCaptureFlush
	}
	if c.MaxLine <= 0 {
		c.MaxLine = DefaultCaptureMaxLine
	}
	if c.MaxSources <= 0 {
		c.MaxSources = DefaultCaptureMaxSources
	}
	if c.MaxPartials <= 0 {
		c.MaxPartials = DefaultCaptureMaxPartials
	}
}

// consoleMsg is one parsed console message.
type consoleMsg struct {
	seq  uint64
	secs float64 // mg_time(): Unix seconds once the clock is set, else since boot
	n    int     // file descriptor, or log level with CaptureConfig.Levels
	text []byte  // one console write
}

// unixAfter is the least device time taken as Unix time (2017-07-14): below
// it, the device's clock is not set and its time counts from boot.
const unixAfter = 1500000000

// parseConsole parses "<device_id> <seq> <time> <n>|<text>": the device id
// (not empty, no space), seq (an unsigned decimal), time (decimal seconds,
// with an optional fraction), n (a decimal, optionally negative) and, after
// '|', the text (any bytes, maybe empty). text points into p.
func parseConsole(p []byte) (consoleMsg, bool) {
	var m consoleMsg
	field := func() ([]byte, bool) {
		i := bytes.IndexByte(p, ' ')
		if i <= 0 {
			return nil, false
		}
		f := p[:i]
		p = p[i+1:]
		return f, true
	}
	if _, ok := field(); !ok { // the device id: the topic names the source
		return m, false
	}
	f, ok := field()
	if !ok || !digits(f) {
		return m, false
	}
	var err error
	if m.seq, err = strconv.ParseUint(string(f), 10, 64); err != nil {
		return m, false
	}
	if f, ok = field(); !ok || !decimal(f) {
		return m, false
	}
	if m.secs, err = strconv.ParseFloat(string(f), 64); err != nil {
		return m, false
	}
	bar := bytes.IndexByte(p, '|')
	if bar <= 0 {
		return m, false
	}
	f = p[:bar]
	if f[0] == '-' {
		f = f[1:]
	}
	if !digits(f) || len(f) > 9 {
		return m, false
	}
	m.n, _ = strconv.Atoi(string(p[:bar]))
	m.text = p[bar+1:]
	return m, true
}

// digits reports whether b is one or more ASCII digits.
func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// decimal reports whether b is digits with an optional ".digits".
func decimal(b []byte) bool {
	whole, frac, dot := bytes.Cut(b, []byte{'.'})
	return digits(whole) && (!dot || digits(frac))
}

// noLevel is a line without a level.
const noLevel = -1

// Capture stores the console writes of devices as entries. Make one with
// Service.Capture; hooks hands it every captured message (Write).
//
// Its state is one mutex's: per source, the last seq and the counts, and
// at most one partial line per stream, each with a timer that stores it
// when no continuation arrives in time. Appends are queued under the
// mutex, so the entries of a source keep the order of its writes.
type Capture struct {
	svc *Service
	cfg CaptureConfig

	mu       sync.Mutex
	srcs     map[string]*capSource // guarded by mu
	partials int                   // partial lines buffered; guarded by mu
	closed   bool                  // guarded by mu
	appends  sync.WaitGroup

	untrackedLimit *bucket // the shared bucket of untracked sources; nil: no limit

	lines, lost, restarts, unparsed, untracked, limited atomic.Int64
}

// capSource is what Capture keeps of one source.
type capSource struct {
	seen           bool   // a parsed message has arrived: seq is its seq
	seq            uint64 // the last seq
	lost, restarts int64
	lines          int64       // entries captured
	parts          [2]*partial // partial lines: console (and levels), stderr
	limit          *bucket     // nil: no rate limit
}

// partial is a line still waiting for its end.
type partial struct {
	text  []byte
	ts    int64 // ms: the first write's
	level int
	timer *time.Timer
}

// CaptureStats are the totals of console capture, for metrics.
type CaptureStats struct {
	Lines     int64 // entries stored from captured messages
	Lost      int64 // messages a seq gap showed lost
	Restarts  int64 // device restarts (seq went back)
	Unparsed  int64 // payloads not in the console format, stored whole
	Untracked int64 // messages of sources past MaxSources (not counted, not joined)
	Limited   int64 // messages dropped by the rate limit
}

// Capture starts console capture into s's store. Shutdown stores the
// partial lines left.
func (s *Service) Capture(cfg CaptureConfig) *Capture {
	cfg.setDefaults()
	if cfg.Rate == 0 {
		cfg.Rate, cfg.RateBurst = s.cfg.Rate, s.cfg.RateBurst
	}
	c := &Capture{svc: s, cfg: cfg, srcs: map[string]*capSource{}}
	c.untrackedLimit = c.newLimit()
	s.capture.Store(c)
	return c
}

// newLimit returns a token bucket of the configured rate, nil for none.
func (c *Capture) newLimit() *bucket {
	if c.cfg.Rate <= 0 {
		return nil
	}
	burst := c.cfg.RateBurst
	if burst <= 0 {
		burst = int(max(1, c.cfg.Rate))
	}
	return newBucket(c.cfg.Rate, burst)
}

// Stats returns the capture's totals.
func (c *Capture) Stats() CaptureStats {
	return CaptureStats{
		Lines: c.lines.Load(), Lost: c.lost.Load(), Restarts: c.restarts.Load(),
		Unparsed: c.unparsed.Load(), Untracked: c.untracked.Load(), Limited: c.limited.Load(),
	}
}

// Write captures one message published by a device on a topic that names
// src. It does not keep payload.
func (c *Capture) Write(src string, payload []byte) {
	if ValidSrc(src) != nil {
		c.svc.log.Debug("console not captured", "src", src, "err", "not a valid source name")
		return
	}
	now := time.Now()
	m, ok := parseConsole(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	s := c.source(src)
	limit := c.untrackedLimit
	if s != nil {
		limit = s.limit
	}
	if limit != nil && !limit.take(now) {
		if n := c.limited.Add(1); n&(n-1) == 0 { // at 1, 2, 4, ... dropped: not a line each
			c.svc.log.Warn("captured console over the rate limit: dropped", "src", src, "dropped", n)
		}
		return
	}
	if !ok {
		c.unparsed.Add(1)
		c.store(src, s, defaultStream, payload, now.UnixMilli(), noLevel)
		return
	}
	slot, stream, level := 0, defaultStream, noLevel
	switch {
	case c.cfg.Levels:
		if m.n >= 0 && m.n <= 4 {
			level = m.n
		}
	case m.n == 2:
		slot, stream = 1, "stderr"
	}
	if s != nil {
		c.count(src, s, m.seq)
	}
	ts := now.UnixMilli()
	if m.secs >= unixAfter && m.secs*1000 < maxTimestamp {
		ts = int64(math.Round(m.secs * 1000))
	}
	text := m.text
	for {
		i := bytes.IndexByte(text, '\n')
		if i < 0 {
			break
		}
		line := text[:i]
		text = text[i+1:]
		if p := c.take(s, slot); p != nil {
			c.store(src, s, stream, trimCR(append(p.text, line...)), p.ts, p.level)
		} else {
			c.store(src, s, stream, trimCR(line), ts, level)
		}
	}
	if len(text) == 0 {
		return
	}
	switch p := c.take(s, slot); {
	case p != nil && len(p.text)+len(text) < c.cfg.MaxLine:
		c.hold(src, s, slot, stream, append(p.text, text...), p.ts, p.level)
	case p != nil:
		c.store(src, s, stream, append(p.text, text...), p.ts, p.level)
	case s == nil || c.partials >= c.cfg.MaxPartials || len(text) >= c.cfg.MaxLine:
		c.store(src, s, stream, text, ts, level)
	default:
		c.hold(src, s, slot, stream, bytes.Clone(text), ts, level)
	}
}

// source returns src's state, made on first use; nil once MaxSources
// sources are tracked. c.mu is held.
func (c *Capture) source(src string) *capSource {
	s, ok := c.srcs[src]
	if ok {
		return s
	}
	if len(c.srcs) >= c.cfg.MaxSources {
		c.untracked.Add(1)
		return nil
	}
	s = &capSource{limit: c.newLimit()}
	c.srcs[src] = s
	return s
}

// count accounts for seq: a gap counts as lost messages, a seq lower than
// the last as a restart (whose partial lines are stored: the new boot does
// not continue them, and its messages before seq count as lost). c.mu is
// held.
func (c *Capture) count(src string, s *capSource, seq uint64) {
	var lost int64
	switch {
	case !s.seen:
	case seq > s.seq:
		lost = int64(min(seq-s.seq-1, math.MaxInt32))
	case seq < s.seq:
		s.restarts++
		c.restarts.Add(1)
		for slot := range s.parts {
			if p := c.take(s, slot); p != nil {
				c.store(src, s, streamOfSlot(slot), p.text, p.ts, p.level)
			}
		}
		lost = int64(min(seq, math.MaxInt32))
	}
	s.seen, s.seq = true, seq
	s.lost += lost
	c.lost.Add(lost)
}

func streamOfSlot(slot int) string {
	if slot == 1 {
		return "stderr"
	}
	return defaultStream
}

// take removes and returns the partial line of s in slot, stopping its
// timer; nil if there is none. c.mu is held.
func (c *Capture) take(s *capSource, slot int) *partial {
	if s == nil || s.parts[slot] == nil {
		return nil
	}
	p := s.parts[slot]
	s.parts[slot] = nil
	c.partials--
	p.timer.Stop()
	return p
}

// hold keeps text as the partial line of s in slot, stored after
// FlushAfter unless a continuation takes it first. c.mu is held.
func (c *Capture) hold(src string, s *capSource, slot int, stream string, text []byte, ts int64, level int) {
	p := &partial{text: text, ts: ts, level: level}
	p.timer = time.AfterFunc(c.cfg.FlushAfter, func() { c.expire(src, s, slot, stream, p) })
	s.parts[slot] = p
	c.partials++
}

// expire stores p as it is, if it is still the partial line of s in slot.
func (c *Capture) expire(src string, s *capSource, slot int, stream string, p *partial) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || s.parts[slot] != p {
		return
	}
	c.take(s, slot)
	c.store(src, s, stream, p.text, p.ts, p.level)
}

// store appends one line as an entry whose msg is the line as a JSON
// string, with the level of its first write (-1, or no --capture-levels:
// none). c.mu is held (appends keep the order of the writes).
func (c *Capture) store(src string, s *capSource, stream string, line []byte, ts int64, level int) {
	if s != nil {
		s.lines++
	}
	c.lines.Add(1)
	rec := storage.Record{Src: src, Stream: stream, Timestamp: ts, Msg: appendString(nil, string(line)), Level: storage.LevelOf(level)}
	c.appends.Add(1)
	c.svc.store.AppendAsync(rec, func(_ storage.Entry, err error) {
		defer c.appends.Done()
		if err != nil {
			c.svc.log.Warn("captured line not stored", "src", src, "err", err)
			return
		}
		c.svc.unpublished.Add(1) // until onCommit has it, as for Log.Log
	})
}

// trimCR drops one trailing '\r'.
func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// counts returns src's lost and restart counts; ok once src has captured
// lines.
func (c *Capture) counts(src string) (lost, restarts int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.srcs[src]
	if s == nil || s.lines == 0 {
		return 0, 0, false
	}
	return s.lost, s.restarts, true
}

// close stores every partial line, takes no more writes, and waits until
// the appends are durable or ctx ends.
func (c *Capture) close(ctx context.Context) error {
	c.mu.Lock()
	if !c.closed {
		for src, s := range c.srcs {
			for slot := range s.parts {
				if p := c.take(s, slot); p != nil {
					c.store(src, s, streamOfSlot(slot), p.text, p.ts, p.level)
				}
			}
		}
		c.closed = true
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.appends.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
