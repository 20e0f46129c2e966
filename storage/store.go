package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logbroker/logbroker/storage/queue"
)

// Sentinel errors of the Pebble store, in addition to those in entry.go.
var (
	// ErrFailed is returned by every write (and, after a panic inside
	// Pebble, every read) once a write or sync to disk has failed, until
	// the store has recovered: it reopens its database by itself once the
	// disk takes writes again (see doc.go, Caveats). Store.Err reports the
	// cause meanwhile.
	ErrFailed = errors.New("store failed")
	// ErrDiskFull is returned (wrapped with ErrFailed) by appends while the
	// store's volume has less free space than Options.MinFreeBytes.
	ErrDiskFull = errors.New("disk almost full")
	// ErrInvalid is returned for a source or stream name that is empty or
	// contains a NUL byte (the key layout cannot hold it).
	ErrInvalid = errors.New("invalid source or stream name")
)

// DefaultMaxBatchBytes is the default of Options.MaxBatchBytes.
const DefaultMaxBatchBytes = 1 << 20

// DefaultMinFreeBytes is the default of Options.MinFreeBytes.
const DefaultMinFreeBytes = 64 << 20

// DefaultDiskCheckInterval is the default of Options.DiskCheckInterval.
const DefaultDiskCheckInterval = time.Second

// DefaultRecoverInterval is the default of Options.RecoverInterval.
const DefaultRecoverInterval = 2 * time.Second

// Options configure Open. The zero value is ready to use.
type Options struct {
	// FS is the file system Pebble uses; nil means vfs.Default (the OS).
	// Tests pass vfs.NewMem(), vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// Logger receives Pebble's errors and the store's own; nil discards.
	Logger *slog.Logger
	// MaxBatchBytes bounds the keys and values of one group commit; a
	// longer queue is committed as several batches, one after another.
	// 0 means DefaultMaxBatchBytes. Keep it under half of Pebble's memtable
	// size (4 MiB by default), else batches bypass the memtable.
	MaxBatchBytes int
	// RecoverInterval is how often a failed store checks whether the disk
	// takes writes again, and if so reopens its database. 0 means
	// DefaultRecoverInterval.
	RecoverInterval time.Duration
	// MinFreeBytes is the free space the store leaves on its volume:
	// while less is free, appends are refused (ErrDiskFull, wrapped with
	// ErrFailed) before they reach Pebble, so the disk does not fill up
	// under it; Delete and retention still run and free space. 0 means
	// DefaultMinFreeBytes; < 0 turns the check off. File systems that
	// cannot report their free space (vfs.NewMem) are not checked.
	MinFreeBytes int64
	// DiskCheckInterval is how often the free space is checked; 0 means
	// DefaultDiskCheckInterval.
	DiskCheckInterval time.Duration
	// Retention bounds what the store keeps (see Retention); the zero
	// value keeps everything.
	Retention Retention
	// Now is the clock of append times (age marks and retention by age);
	// nil means time.Now. Tests pass a controllable clock.
	Now func() time.Time
	// TailCacheBytes bounds the memory of the tail cache, which serves
	// List of one stream near its head without reading Pebble (see
	// doc.go, Tail cache). 0 means DefaultTailCacheBytes; < 0 turns the
	// cache off.
	TailCacheBytes int64
	// DedupWindow is how long a record with a Dedup key is remembered: a
	// record with the same key within it is answered with the first
	// entry's sequence and not stored again (doc.go, De-duplication).
	// 0 turns de-duplication off.
	DedupWindow time.Duration
	// DedupMax bounds how many records the window remembers (the oldest
	// are forgotten first); 0 means DefaultDedupMax.
	DedupMax int
}

// Store is the Pebble-backed durable log. It is safe for concurrent use.
//
// Lock order: life, then smu, then tail.evictMu, then a tail shard's mu;
// life, then vmu. bgMu, marks.mu, subs.mu and queue's mutex are leaves:
// nothing else is acquired while one is held. The committer goroutine
// never takes life, and holds smu only to register a source (sourceFor)
// and to advance the heads (commit); it delivers (done callbacks, waiters,
// subscribers) holding no lock at all.
type Store struct {
	db       *pebble.DB // nil while a recovery has closed it and not yet reopened it
	dir      string
	fs       vfs.FS
	log      *slog.Logger
	maxBatch int

	// Background goroutines (recovery), stopped by Close.
	recoverEvery time.Duration
	retention    Retention
	now          func() time.Time
	bgMu         sync.Mutex // guards bgStopped and bg.Add; a leaf
	bgStopped    bool
	stop         chan struct{} // closed by Close
	bg           sync.WaitGroup

	// The queue of AppendAsync, Append and Delete calls, drained by the
	// committer goroutine; closed by Close (no more calls accepted). Its
	// mutex is a leaf: Push never waits on the committer.
	queue queue.Queue[op]

	loopDone chan struct{} // closed when the committer is gone

	// Per-source sequences. The map is written only by the committer (under
	// smu); readers use smu.RLock. Acquired after life (readers hold
	// life.RLock), never while holding vmu, bgMu or a tail shard's mu;
	// held, it allows a tail shard's mu (fillTail, watch, clear).
	smu     sync.RWMutex
	sources map[string]*source

	// failed is set by a failed write (on the committer goroutine) and
	// cleared by a recovery, which swaps db before it clears it: the
	// committer touches db and sources only while failed is nil.
	failed atomic.Pointer[failure]
	// low is set while the volume has less free space than minFree: the
	// error appends fail with. Set and cleared by the disk checker.
	low       atomic.Pointer[error]
	minFree   int64
	diskEvery time.Duration

	// view is set while a batch that deletes (Delete, retention) is
	// syncing: a snapshot taken just before it was applied, which is
	// exactly the durable state, for reads to use instead of db, so that a
	// deletion is not visible before it is durable. Guarded by vmu, which
	// is acquired after life and held only to read or swap view: a leaf
	// (the snapshot is closed after it is released).
	vmu  sync.Mutex
	view *durableView

	// life guards db and closed against Close and recovery while reads use
	// it: reads hold life.RLock, Close and tryRecover life.Lock. Acquired
	// first, before smu, vmu and the tail cache's locks; never taken by
	// the committer, nor again by a goroutine that holds it. lifeWanted
	// counts the goroutines waiting to lock it (lockLife): long scans give
	// way to them.
	life       sync.RWMutex
	lifeWanted atomic.Int32
	closed     bool

	closeOnce sync.Once
	closeErr  error

	subs Subscribers

	// Stream counts taken by Streams and retention (catalog.go).
	marks markCache

	// The newest entries of recently listed streams (tailcache.go); nil
	// when turned off.
	tail *tailCache

	// Records with a Dedup key within the window (dedup.go); nil when
	// de-duplication is off. Committer only, while failed is nil.
	dd *dedup

	// Committer-private scratch.
	batchNo uint64
	touched []*source
	pending []group // committed, not yet delivered
	spare   []op    // a delivered queue slice, for the next drain

	stats counters // for Stats
}

// source is the sequence state of one log source.
type source struct {
	name string
	last uint64 // last sequence assigned; committer only
	head uint64 // last sequence made durable; guarded by Store.smu
	mark uint64 // batchNo of the last batch that touched it; committer only
	blk  block  // the summary of the block of last; committer only
}

// durableView is a snapshot of the durable state, shared by the readers
// that took it while a deleting batch syncs; the last release closes it.
type durableView struct {
	snap *pebble.Snapshot
	refs atomic.Int64
}

func (v *durableView) release() {
	if v.refs.Add(-1) == 0 {
		_ = catch(v.snap.Close)
	}
}

// reader returns what a read should use: the durable view while a deleting
// batch syncs, else the database. Called with s.life read-locked; call
// release when done, before unlocking it.
func (s *Store) reader() (r pebble.Reader, release func()) {
	s.vmu.Lock()
	v := s.view
	if v != nil {
		v.refs.Add(1)
	}
	s.vmu.Unlock()
	if v == nil {
		return s.db, func() {}
	}
	return v.snap, v.release
}

// setView publishes v (nil: none) as the durable view, releasing the
// committer's reference to the previous one.
func (s *Store) setView(v *durableView) {
	s.vmu.Lock()
	old := s.view
	s.view = v
	s.vmu.Unlock()
	if old != nil {
		old.release()
	}
}

// failure is the latched cause of a failed store.
type failure struct {
	err      error // wraps ErrFailed and the cause
	poisoned bool  // Pebble panicked: do not call it again, not even Close
	since    time.Time
}

// Open opens (creating if needed) the store kept in dir.
func Open(dir string, opts Options) (s *Store, err error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxBatch := opts.MaxBatchBytes
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchBytes
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	minFree := opts.MinFreeBytes
	if minFree == 0 {
		minFree = DefaultMinFreeBytes
	}
	diskEvery := opts.DiskCheckInterval
	if diskEvery <= 0 {
		diskEvery = DefaultDiskCheckInterval
	}
	recoverEvery := opts.RecoverInterval
	if recoverEvery <= 0 {
		recoverEvery = DefaultRecoverInterval
	}
	db, err := openDB(dir, fs, log)
	if err != nil {
		return nil, fmt.Errorf("open %q: %w", dir, err)
	}
	s = &Store{
		db:           db,
		dir:          dir,
		fs:           fs,
		log:          log,
		maxBatch:     maxBatch,
		recoverEvery: recoverEvery,
		retention:    opts.Retention,
		minFree:      minFree,
		diskEvery:    diskEvery,
		now:          now,
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
		sources:      make(map[string]*source),
		tail:         newTailCache(opts.TailCacheBytes),
	}
	if opts.DedupWindow > 0 {
		s.dd = newDedup(opts.DedupWindow.Milliseconds(), opts.DedupMax)
		if err := s.dd.load(db, now().UnixMilli()); err != nil {
			_ = catch(db.Close)
			return nil, fmt.Errorf("open %q: %w", dir, err)
		}
	}
	if minFree > 0 && s.checkDisk() {
		s.goBackground(s.diskLoop)
	}
	go s.commitLoop()
	if s.retention.enabled() {
		s.goBackground(s.retentionLoop)
	}
	return s, nil
}

// openDB opens the Pebble database in dir and checks its format marker.
func openDB(dir string, fs vfs.FS, log *slog.Logger) (*pebble.DB, error) {
	po := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: formatMajorVersion,
		Logger:             pebbleLogger{log: log},
	}
	var db *pebble.DB
	if err := catch(func() error {
		var err error
		db, err = pebble.Open(dir, po)
		return err
	}); err != nil {
		return nil, err
	}
	if err := checkFormat(db); err != nil {
		_ = catch(db.Close)
		return nil, err
	}
	return db, nil
}

// formatMajorVersion is the on-disk format Pebble writes, pinned rather than
// pebble.FormatNewest: with FormatNewest, upgrading the Pebble module would
// silently ratchet the format of existing stores (irreversibly: an older
// binary could no longer open them). Raise it deliberately, with a test run
// on a store written by the previous version. FormatValueSeparation is the
// newest named format of Pebble v2.1.7 (equal to its FormatNewest); Pebble
// opens older formats and upgrades them to this one.
const formatMajorVersion = pebble.FormatValueSeparation

// checkFormat writes the format marker into a new, empty database and checks
// it in an existing one. A database with keys but no marker belongs to
// something else: it is refused, never adopted.
func checkFormat(db *pebble.DB) error {
	v, closer, err := db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		empty, err := isEmpty(db)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("not a logbroker store (no format marker, want %q)", formatVersion)
		}
		return catch(func() error { return db.Set(metaKey, []byte(formatVersion), pebble.Sync) })
	case err != nil:
		return err
	}
	defer closer.Close()
	switch string(v) {
	case formatVersion:
		return nil
	case formatVersion1:
		// Its values decode unchanged (no level byte); the marker moves on
		// so that an older binary, which would take a level byte for part
		// of msg, refuses the store instead of misreading it.
		return catch(func() error { return db.Set(metaKey, []byte(formatVersion), pebble.Sync) })
	}
	return fmt.Errorf("not a logbroker store (format %q, want %q)", v, formatVersion)
}

// isEmpty reports whether db holds no key at all.
func isEmpty(db *pebble.DB) (bool, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return false, err
	}
	empty := !it.First()
	return empty, errors.Join(it.Error(), it.Close())
}

// Err returns nil while the store is healthy, else the error (wrapping
// ErrFailed and its cause) that made it refuse writes.
func (s *Store) Err() error {
	if f := s.failed.Load(); f != nil {
		return f.err
	}
	if p := s.low.Load(); p != nil {
		return *p
	}
	return nil
}

// diskLoop checks the free space every diskEvery until Close.
func (s *Store) diskLoop() {
	t := time.NewTicker(s.diskEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if !s.checkDisk() {
				return
			}
		}
	}
}

// checkDisk reads the free space of the store's volume and refuses or
// accepts appends again (with a quarter of minFree as hysteresis). It
// returns false if the file system cannot report it.
func (s *Store) checkDisk() bool {
	du, err := s.fs.GetDiskUsage(s.dir)
	if err != nil {
		if s.low.Load() == nil {
			s.log.Debug("storage: free space not checked", "err", err)
			return false
		}
		return true // keep the state; try again
	}
	avail := int64(min(du.AvailBytes, 1<<62))
	low := s.low.Load() != nil
	switch {
	case !low && avail < s.minFree:
		err := fmt.Errorf("%w: %w: %d bytes free on %s, %d reserved", ErrFailed, ErrDiskFull, avail, s.dir, s.minFree)
		s.low.Store(&err)
		s.log.Error("storage: disk almost full; appends are refused (error 500) until space is freed: "+
			"free space on the data volume, delete streams, or lower the retention limits; the store resumes by itself",
			"dir", s.dir, "free", avail, "reserve", s.minFree)
	case low && avail >= s.minFree+s.minFree/4:
		s.low.Store(nil)
		s.log.Warn("storage: disk space available again; appends are accepted", "dir", s.dir, "free", avail)
	}
	return true
}

// fail latches the store into the failed state and returns the latched
// error (the first one, if it had already failed). It is called on the
// committer goroutine only. Unless Pebble panicked, a recovery goroutine
// starts: it reopens the database once the disk takes writes again.
func (s *Store) fail(cause error, poisoned bool) error {
	f := &failure{err: fmt.Errorf("%w: %w", ErrFailed, cause), poisoned: poisoned, since: time.Now()}
	if !s.failed.CompareAndSwap(nil, f) {
		return s.failed.Load().err
	}
	switch {
	case poisoned:
		s.log.Error("storage failed: Pebble panicked; writes and reads are refused until the process is restarted", "err", cause)
	case errors.Is(cause, syscall.ENOSPC):
		s.log.Error("storage failed: disk full; writes are refused (error 500) until space is freed: "+
			"free space on the data volume or lower the retention limits; the store resumes by itself",
			"err", cause, "dir", s.dir, "retry", s.recoverEvery)
	default:
		s.log.Error("storage failed: I/O error; writes are refused (error 500) until the disk takes writes again: "+
			"check the data volume (kernel log, free space); the store resumes by itself",
			"err", cause, "dir", s.dir, "retry", s.recoverEvery)
	}
	if !poisoned {
		s.goBackground(func() { s.recoverLoop(f) })
	}
	return f.err
}

// goBackground runs fn on a goroutine Close waits for, unless Close has
// begun stopping them.
func (s *Store) goBackground(fn func()) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgStopped {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
}

// recoverLoop tries, every recoverEvery, to recover the store from failure
// f, until it succeeds or Close stops it.
func (s *Store) recoverLoop(f *failure) {
	t := time.NewTicker(s.recoverEvery)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		err := s.tryRecover()
		if err == nil {
			s.log.Warn("storage recovered: writes are accepted again", "outage", time.Since(f.since).Round(time.Millisecond))
			return
		}
		if msg := err.Error(); msg != lastErr {
			lastErr = msg
			s.log.Warn("storage still failed", "err", err)
		}
	}
}

// probeFile is written and synced in the store's directory to check that
// the disk takes writes again before the database is closed for a reopen.
const probeFile = "logbroker-probe.tmp"

// tryRecover checks that the disk takes writes (a probe file written and
// synced), then closes the database, opens it again from the same
// directory, flushes what its WAL held (so it is durable), and installs it
// with an empty table of sources: each is reloaded from its 'q' key on
// first use, the truth on disk whether or not the failed batch reached
// it, so sequences are never handed out twice. Reads keep using the old
// database until the probe succeeds; between the close and a successful
// reopen they fail with the store's error.
func (s *Store) tryRecover() error {
	if err := s.probe(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	s.lockLife()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	old := s.db
	s.db = nil
	s.setView(nil) // no reader holds it now: its snapshot closes before old does
	s.life.Unlock()
	if old != nil {
		// The WAL writer latched the failure: Close reports it again.
		if err := catch(old.Close); err != nil {
			s.log.Debug("storage: close after failure", "err", err)
		}
	}
	db, err := openDB(s.dir, s.fs, s.log)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	if err := catch(db.Flush); err != nil {
		_ = catch(db.Close)
		return fmt.Errorf("reopen: flush: %w", err)
	}
	if s.dd != nil {
		// The failed batch's keys may or may not be on disk: the truth is.
		if err := s.dd.load(db, s.now().UnixMilli()); err != nil {
			_ = catch(db.Close)
			return fmt.Errorf("reopen: %w", err)
		}
	}
	s.smu.Lock()
	s.sources = make(map[string]*source)
	// Entries of the failed batch may be on disk now: the cache knows
	// nothing any more. Reads that seeded it from the old database held
	// s.life, so they are done.
	s.tail.clear()
	s.smu.Unlock()
	s.lockLife()
	defer s.life.Unlock()
	if s.closed {
		return catch(db.Close)
	}
	s.db = db
	s.failed.Store(nil)
	return nil
}

// probe writes, syncs and removes a small file in the store's directory.
func (s *Store) probe() (err error) {
	return catch(func() error {
		name := s.fs.PathJoin(s.dir, probeFile)
		f, err := s.fs.Create(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		_, werr := f.Write(make([]byte, 4096))
		if werr == nil {
			werr = f.Sync()
		}
		return errors.Join(werr, f.Close(), s.fs.Remove(name))
	})
}

// readable is called with s.life read-locked: it says whether reads may use
// the database.
func (s *Store) readable() error {
	if s.closed {
		return ErrClosed
	}
	if f := s.failed.Load(); f != nil && (f.poisoned || s.db == nil) {
		return f.err
	}
	return nil
}

// Head returns the highest sequence ever made durable for src (0: none),
// including entries since deleted.
func (s *Store) Head(ctx context.Context, src string) (uint64, error) {
	if !validName(src) {
		return 0, fmt.Errorf("head: %w: source %q", ErrInvalid, src)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.readable(); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	h, err := s.durableHead(src)
	if err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return h, nil
}

// durableHead returns the highest durable sequence of src. A source the
// committer has not touched since Open is read from disk: holding smu
// keeps the committer from registering it (and so from writing anything of
// it) meanwhile, so what is on disk is durable.
func (s *Store) durableHead(src string) (uint64, error) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	if st := s.sources[src]; st != nil {
		return st.head, nil
	}
	return s.loadSeq(src)
}

// loadSeq reads the last sequence of src stored on disk.
func (s *Store) loadSeq(src string) (uint64, error) {
	var kb [64]byte
	v, closer, err := s.db.Get(appendSeqKey(kb[:0], src))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load sequence of %q: %w", src, err)
	}
	defer closer.Close()
	if len(v) != seqLen {
		return 0, fmt.Errorf("load sequence of %q: %w", src, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// lockLife locks s.life for writing, telling the filtered scans that hold
// it for reading to give up: while a writer waits, no new reader gets it.
func (s *Store) lockLife() {
	s.lifeWanted.Add(1)
	s.life.Lock()
	s.lifeWanted.Add(-1)
}

// sourceFor returns the sequence state of src, loading it from disk the
// first time. Only the committer calls it: it is the only writer of
// s.sources, so it may read the map without the lock.
func (s *Store) sourceFor(src string) (*source, error) {
	if st := s.sources[src]; st != nil {
		return st, nil
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	seq, err := s.loadSeq(src)
	if err != nil {
		return nil, err
	}
	st := &source{name: strings.Clone(src), last: seq, head: seq}
	s.sources[st.name] = st
	return st, nil
}

// Subscribe registers fn to be called with each group of entries once they
// are durable and listable, in commit order, one call at a time, on the
// store's committer goroutine (after the group's done callbacks). fn must not
// modify the slice, may keep it, and must not call Close. After cancel
// returns, fn is not called with entries made durable later.
func (s *Store) Subscribe(fn func([]Entry)) (cancel func()) {
	return s.subs.Add(fn)
}

// Close stops accepting calls, commits what is already queued (failing it
// if the store has failed), waits for the done and Subscribe callbacks, and
// closes Pebble. Calls made after Close get ErrClosed. Close is idempotent;
// it must not be called from a done or Subscribe callback.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.queue.Close()
		<-s.loopDone

		s.bgMu.Lock()
		s.bgStopped = true
		close(s.stop)
		s.bgMu.Unlock()
		s.bg.Wait()

		s.lockLife()
		s.closed = true
		s.life.Unlock()
		s.tail.clear()
		if s.db == nil {
			s.closeErr = fmt.Errorf("close: %w", s.failed.Load().err)
			return
		}
		if f := s.failed.Load(); f != nil && f.poisoned {
			// Pebble panicked mid-operation and may hold its own locks:
			// closing it could hang. Leave it to the process exit.
			s.closeErr = fmt.Errorf("close: %w", f.err)
			return
		}
		s.setView(nil) // left by a failed batch
		if err := catch(s.db.Close); err != nil {
			s.closeErr = fmt.Errorf("close: %w", err)
		}
	})
	return s.closeErr
}

// catch runs fn, turning a panic (Pebble panics on some internal errors,
// and its Fatalf does through pebbleLogger) into an error.
func catch(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return fn()
}

func panicError(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("pebble panic: %w", err)
	}
	return fmt.Errorf("pebble panic: %v", r)
}
