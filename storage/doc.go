/*
Package storage is logbroker's durable log: entries of log sources, each in
named streams, kept in a Pebble database. It knows nothing of MQTT or
JSON-RPC; the rpc package calls it through its LogStore interface, and
storetest holds the conformance suite any backend must pass.

# Basics

Open a Store on a directory; Close it when done.

	s, err := storage.Open("./logbroker-data", storage.Options{Logger: logger})
	...
	defer s.Close()

Append (or AppendAsync, which calls back) stores a Record and returns its
Entry once it is durable: synced to disk, so it survives kill -9 and power
loss. Each source has one sequence shared by all its streams: an entry's Seq
is strictly increasing in append order within its source and never reused,
not after Delete and not after a restart. Entry.ID renders it as the wire
token. List selects by Query (PROTOCOL §5: after, then last, then limit;
one stream or all streams merged by Seq), Head reports the highest durable
Seq of a source, Delete removes one stream of a source, and Subscribe gets
every durable group of entries, in commit order, after it is listable.

List never returns an entry that is not yet durable: Pebble makes a batch
visible to readers before its WAL sync completes, so every read is cut at
the source's durable head, which the store advances only after the sync.
Nor does it miss one whose deletion is not yet durable (see Caveats).

# Group commit

Append, AppendAsync and Delete (and retention's trims) only queue their call (a queue.Queue: a mutex-guarded slice
and a one-slot wake-up channel; no goroutine or channel per call). One
committer goroutine drains the whole queue, assigns sequences, and writes it
as one Pebble batch (split every Options.MaxBatchBytes) with a single WAL
sync: one fsync for every call that arrived during the previous one. It
then advances the durable heads and delivers the batch: runs the done
callbacks and wakes the waiting Append and Delete calls in queue order,
then calls the subscribers with the batch's entries. It delivers a batch
while the WAL syncs the next one (or at once if there is none), so the
delivery costs no fsync time and no hand-off to another goroutine. So
calls one goroutine queues take effect in that order, a Delete after its
appends included: later operations in a Pebble batch win over earlier ones.

A batch is written only once the previous one's sync succeeded, never
while one is under way: after a failed WAL write or sync Pebble panics on
the next write, so the store must learn of a failure before it writes again.

Done and Subscribe callbacks run on the committer goroutine, one at a time:
they should be quick (a slow one holds up the next batch), and must not
call Append, Delete or Close (which wait for the committer); AppendAsync
and List are fine. In logbroker they publish answers and live entries, and
the committer never waits on a client: publishing only appends to the
client's outbox in package broker (its own mutex, never held across I/O
or a wait), and a goroutine of the outbox sends it. Nothing between a
synced batch and its answers sleeps, polls, or takes a lock that a
client's connect, disconnect or slow socket can hold.

# Key layout

All keys start with a one-byte kind. Source and stream names are non-empty
and contain no NUL byte (ErrInvalid otherwise), so every prefix below is
unambiguous.

	'e' src 0x00 stream 0x00 seq[8 BE]  ->  uvarint(timestamp) [level] msg
	'q' src                             ->  seq[8 BE], last sequence assigned
	't' src 0x00 minute[8 BE]           ->  seq[8 BE], an age mark
	'd' ms[8 BE] n[8 BE]                ->  (key[16] seq[8 BE])..., one batch's Dedup records
	'b' src 0x00 block[8 BE]            ->  minTs[8 BE] maxTs[8 BE], a block summary
	'm'                                 ->  "logbroker/2", the format marker

An entry's value is the uvarint of its timestamp, then a header byte if
needed, then the raw JSON bytes of msg, kept byte for byte (PutValue,
DecodeValue; the JetStream backend stores the same bytes). A header byte
is below 0x08 and holds the entry's Level (0 none, 1 error .. 5 verbose):
it is there when the entry has a level, or when msg itself starts with a
byte below 0x08, which a JSON value never does (it starts with one of
"{[-tfn, a digit or whitespace: 0x09, 0x0a, 0x0d, 0x20). So the values of
a store written before levels existed (format "logbroker/1": no header
byte, JSON msgs) decode unchanged, as entries without a level: Open
accepts such a store and moves its marker to "logbroker/2", so that an
older binary, which would read a header byte as part of msg, refuses it. The 'q' key of a source is written in the
same batch as its entries, is never decreased and never deleted, so no
entry on disk has a sequence above it and sequences are not reused after a
Delete or a restart. The committer keeps each source's last sequence in
memory (loaded from 'q' on first use) next to its durable head.

An age mark says when entries were appended, to the minute, by the store's
clock (Options.Now): every entry of src with a sequence up to seq was
appended before the end of that minute (minutes since the Unix epoch).
Each batch sets the mark of the current minute of every source it
touches, next to the 'q' key, so a source writes at most one mark per
minute it is active (later batches of the minute overwrite it). Retention
by age reads them; it deletes the marks it no longer needs.

List of one stream is a bounded forward (or, for last, backward) scan of
the stream's prefix. List of all streams discovers the source's streams by
a skip-scan (seek to stream 0x01 to jump to the next stream; nothing to go
stale), then merges one iterator per stream, all cloned from one view, by
sequence in a heap. Delete is a single DeleteRange over the stream's
prefix, so its cost does not depend on the stream's size. A source's
streams are not listed anywhere else: a deleted stream simply has no keys.

# De-duplication

With Options.DedupWindow > 0, a Record whose Dedup key is not zero is
stored once per window: an append with the key of a record stored less
than the window ago (by the store's clock) stores nothing and returns that
record's entry (its Seq; Entry.Duplicate set). The committer decides, in
queue order, so a duplicate is never answered before the first is durable:
it is in the same batch as the first, or a later one, and a batch is
delivered only once synced. Concurrent duplicates all get the first's Seq.

The records (key and sequence) of a batch's keyed entries are written as
one 'd' key in that same batch (one memtable insert per batch, not per
entry; n tells apart batches of one ms), so the memory survives kill -9
and power loss exactly as the entries do: Open (and a recovery) reads the
keys of the last window back. Keys are ordered by append time in ms, so
what aged out is one range: once a minute a batch carries a DeleteRange of
the keys older than the window.

In memory: a map from key to (seq, ms) and a queue of the keys in append
order: 64 bytes a record, at most about 150 with the map's and the
queue's growth slack. Records older than the window leave the queue's head
at each batch; past Options.DedupMax records (DefaultDedupMax, 262,144:
under 40 MiB) the oldest are forgotten early,
so under a sustained rate above DedupMax/window keyed appends a second the
effective window shrinks to the last DedupMax appends. Open reads at most
the window's keys from disk, keeping the newest DedupMax.

The key is the caller's: package rpc uses the first 128 bits of the
SHA-256 of the call's src, id and payload. Two different calls collide
with probability about n²/2^129 for n records in the window: below 10^-27
at the DedupMax bound. A collision would answer a new call with the other
call's entry id, storing nothing.

# Filters

A Query with a Filter (PROTOCOL §5: level, match, regex, since, until)
selects among the entries that pass it: List applies it while it scans,
to each value as Pebble holds it (decoded in place, nothing copied for an
entry that fails), and returns only the entries that pass, with the same
after, last and limit rules. Such a List may scan far: it checks its ctx
every 1024 entries (the caller bounds it: the rpc layer answers 504 when
it runs out), holds only the read side of the store's life lock and no
lock of the committer, and gives way (ErrClosed) when Close or a recovery
waits for that lock, so that no other read queues behind it. Filtered
queries are never served from or seeded into the tail cache.

An entry's text, for match and regex, is its msg decoded if it is a JSON
string, else its msg as stored (Text). It is decoded only when the raw
string holds a backslash. match folds case by Unicode simple case folding
(unicode.SimpleFold orbits), without copying: an ASCII needle looks for its
rarest byte in both cases with bytes.IndexByte and compares there; since
the only non-ASCII runes that fold to ASCII letters are U+212A (Kelvin,
k) and U+017F (long s), a needle with k or s whose byte search fails looks
again rune by rune when the text holds their lead bytes. Filter.Keep is
the same test for one entry (the follow of a filtered List uses it), and
the JetStream backend filters in its read loop with it: the matching code
is written once, here.

# Time ranges

since and until would scan a whole source if timestamps were all the
store knew: they are the devices', in no particular order. So the
committer keeps, per source, a summary of each block of 256 sequences
(seq >> 8): the smallest and largest timestamp of its entries, in a 'b'
key written in the same batch as the entries (one 24-byte key per source
per batch, next to its 'q' key; a batch that crosses a block boundary
writes both blocks'). A List with a time range reads the summaries along
with the entries and skips, with one seek of each stream's iterator, every
run of blocks whose range does not meet [since, until): the entries and
the Pebble blocks holding them are never read. It is exact whatever the
order of the timestamps: a summary covers every entry ever appended to its
block (an entry's summary is durable no later than the entry itself, and a
process that restarts inside a block widens the stored summary, never
replaces it), so a skipped block holds no entry in the range; the entries
of kept blocks are still checked one by one. Out-of-order timestamps only
cost speed: a block holding a stray timestamp (a device whose clock was
not yet set) has a wide range and is read by every time range. A block
without a summary (entries of a logbroker/1 store) may hold anything and
is always read. Deletes and retention leave summaries in place (wider than
needed, never too narrow); they cost under a quarter of a byte per entry.

# Tail cache

List of one stream near its head (a console's last 100 lines, a follower
paging on with after) is served from memory when it can: the store keeps,
for the streams that are listed, their newest durable entries (seq,
timestamp, a private copy of msg, in per-stream chunks) and a bound below
which it does not hold them. A query of one stream is served from the cache
when every entry it selects is above the bound (after at or above it), or
when it asks for the final Last and at least Last cached entries are above
after; the result is the same as Pebble's, copied (the caller owns it).
ListShared is the same call without the copy: its entries' Msg may be the
cache's memory, which the caller must not modify (the store never does:
msgs are copied into a stream's chunks once, back to back, and never
written again), for callers that only read them. Anything else (merged queries of all streams, paging far back) reads
Pebble as before.

The committer applies each synced batch to the cache under the same lock,
at the same moment, as it advances the durable heads: appends to known
streams, Deletes (the stream becomes known and empty), retention trims
(the entries up to the cut go). So the cache holds exactly the durable
entries, never one whose batch is still syncing. A deletion is applied
only once durable; until then reads see the durable state, from the cache
or Pebble's durable view; and from the end of its sync to its application
the stream is not served from the cache, so no read sees it undeleted after
one has seen it deleted. A stream the cache does not know is not filled by
appends (so appending to a stream nobody lists costs a map lookup): the
first List of it that misses reads Pebble and seeds the cache with its
result if that is the whole stream above some bound up to the durable head
(the final Last, or everything after after) and no batch touched the stream
since that head was read; each stream's version, bumped by the committer
under the same lock as the heads, proves it. A List before a stream's
first entry makes it known (empty). A recovery after an I/O failure, and
Close, empty the cache: the failed batch may or may not be on disk.

Memory is bounded by Options.TailCacheBytes (DefaultTailCacheBytes, 32 MiB;
< 0 turns the cache off), counted as the chunks' capacity plus about 40
bytes per entry plus a few hundred bytes per stream; over it, the least
recently listed streams are evicted whole, down to 7/8 of it. Each stream
keeps at most its newest 1,024 entries and 1 MiB of msgs (an older entry
raises its bound). Stats reports the cache's hits, misses and bytes. There
is no goroutine: the committer and the Lists that miss do the work.

# Retention

Options.Retention bounds what is kept: entries older than MaxAge, more than
MaxEntriesPerStream in a stream, more than MaxBytesPerSource in a source
are removed, oldest first (by sequence). All are off by default. A
background goroutine applies them every Retention.Interval: it lists the
sources ('q' keys) and, for each, plans on one view of the durable entries
(nothing above the durable head is touched), then queues one trim op per
stream to the committer: a DeleteRange from the stream's first key up to
the cut, in the next group commit, synced. Appends are not stalled: the
planning is reads only, and a trim is one range tombstone in a batch.
Sequences and 'q' keys are untouched, so ids are never reused.

Age is by append time, not by the entry's timestamp: the timestamp is the
client's, and a device with a wrong clock (1970, or next year) would have
its entries removed at once or kept for ever. The entry value does not
hold the append time; the age marks do, per source and minute, so an entry
is removed between MaxAge and MaxAge + 1 minute + Interval after it was
appended (by the server's wall clock: a clock stepped back keeps entries
longer, never shorter). Entries appended before the marks existed (none in
format logbroker/1 stores written by this version) are not aged out.

Counting entries and bytes reuses the catalog's remembered stream counts
(below): a run costs one iterator step per entry appended since the
previous run, plus one per entry it removes; after a trim it records the
stream's new first entry and count, so Streams need not count again.
Bytes are keys and values as stored, before compression and before
Pebble's space amplification: the disk use is roughly that divided by the
compression ratio, plus up to a few memtables and the WAL; space is freed
as compactions drop the deleted ranges, not at once.

# Free space

The store keeps Options.MinFreeBytes (64 MiB by default) free on its
volume: a goroutine reads the free space every DiskCheckInterval (and once
at Open), and while less is free every Append and AppendAsync fails at once
with ErrDiskFull (wrapped with ErrFailed: error 500 on the wire), before it
reaches Pebble, so it uses no sequence. Delete, retention, List, Head and
the catalog keep working: deleting is how space comes back (Pebble frees
it as compactions drop the deleted ranges, which needs some free space:
hence the reserve). It is logged once at error level with what to do, and
appends are accepted again, by themselves, once a quarter of the reserve
more is free ("disk space available again", at warn level). A disk filled
by something else can still make a Pebble write fail with ENOSPC: see
Caveats.

# Caveats

A failed WAL write or sync (an I/O error, or ENOSPC: a full disk) fails
every call of its batch with an error wrapping ErrFailed and the cause;
nothing of that batch is acknowledged. Pebble cannot take more writes after
such a failure (its WAL writer latches the error and would panic), so the
store latches too: every later Append, AppendAsync and Delete fails at once
with ErrFailed (error 500 on the wire), Err reports the cause, and List and
Head keep serving what is durable. The failure is logged once, at error
level, with what the operator should do (free space, or check the disk).

The store then recovers by itself. Every Options.RecoverInterval a
background goroutine writes and syncs a small probe file in the store's
directory; once that succeeds, it closes the database, opens it again from
the same directory, flushes what the reopened WAL held, and forgets its
per-source state: each source's sequence is reloaded from its 'q' key on
first use. That key was in the same batch as the failed entries, so
whether or not the failed batch reached the disk, no sequence on disk is
ever handed out again. Writes are then accepted again ("storage
recovered", logged at warn level with the outage's length). Between the
close and a successful reopen (a disk that takes a small probe but still
fails Pebble), reads fail with ErrFailed too; the loop simply tries again.
Entries of a failed batch that did reach the disk become listable after
the recovery, as after a restart: they were never acknowledged, and their
ids are below every id handed out later (a follower already past them
does not see them). A panic inside Pebble ("poisoned") is not recovered:
Pebble may hold its own locks, so closing it could hang, and it holds the
directory's lock, so it cannot be reopened in this process; the store
refuses reads and writes until the process restarts.

Worse, when the failing write is the close of a WAL file at a memtable
rotation (a batch that fills the memtable), Pebble v2.1.7 panics in
rotateWAL while its mutex is unlocked, and the deferred unlock turns that
into a fatal runtime error ("sync: unlock of unlocked mutex"), which no
recover can catch: the process exits (observed with errorfs injecting
ENOSPC on a batch larger than the first memtable; only the one batch per
memtable, up to 4 MiB, that rotates it is exposed). A supervisor restarts
it; Open fails ("no space left on device") while the disk is still full,
and finds everything acknowledged once space is freed. The free-space reserve above keeps the store's own writes from
getting there.

A deletion (Delete, or a retention trim) has no sequence to cut at, and
Pebble shows a batch to readers before its WAL sync. So while a batch that
deletes is syncing, reads (List, Sources, Streams) use a Pebble snapshot
taken just before it was applied: exactly the durable state, since the
previous batch's sync had completed. The committer drops it once the sync
succeeds, before the heads advance. If the sync fails, the snapshot stays
until the recovery reopens the database (then the disk decides: the
deletion may or may not have happened; the call was not acknowledged).

Pebble reports some errors it cannot recover from through Logger.Fatalf
(for instance a failed MANIFEST write in a background flush); the store logs
them and panics. A panic in a call the store makes is recovered and fails
the store (it then refuses reads too, and Close leaves Pebble unclosed, since
it may hold its own locks); one on Pebble's own goroutines ends the process,
with the message logged, rather than exiting silently.

The store keeps a small record per source written since Open, for the life
of the process. The queue is unbounded: callers bound their own concurrency
(the rpc layer does, per connection). Limit <= 0 in a Query means no limit;
callers clamp it. With Last, List steps over up to Last keys (not values) to
find where the final Last begin.

Sources and Streams (catalog.go) read the same keys, cut at the durable
heads. Sources walks the 'q' keys, so a source whose entries were all
deleted is still listed (Empty); it finds each source's latest entry with
two seeks per stream. Streams counts a stream by iterating its keys:
O(entries) the first time. The count is remembered (per process, up to
16384 streams) with the stream's first sequence, and a later call counts
only the entries added since, unless that first entry is gone (the stream
was deleted): a dashboard polling a long stream pays for new entries only.
*/
package storage
