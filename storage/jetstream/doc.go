/*
Package jetstream is logbroker's durable log on a NATS JetStream cluster,
for running several logbroker nodes over one replicated store. It has the
semantics of the Pebble store (package storage) and passes the same
conformance suite (storage/storetest); rpc reaches it through rpc.LogStore.

# Basics

Open a Store over a NATS connection; Close it, then the connection.

	nc, err := nats.Connect("nats://a:4222,nats://b:4222,nats://c:4222")
	...
	s, err := jetstream.Open(ctx, nc, jetstream.Options{Replicas: 3})
	...
	defer nc.Close()
	defer s.Close()

Open creates the streams when absent: file storage, Options.Replicas
replicas, limits retention (Options.MaxAge, MaxBytes, MaxMsgs, and
MaxPerStream as the limit per subject), a duplicate window, direct get
allowed. An entry is acknowledged once JetStream stored it on a quorum of
replicas. That is durable only if every NATS server runs with

	jetstream { sync_interval: always }

since by default JetStream acknowledges writes it has not synced to disk
(acknowledged entries were lost that way in a published Jepsen analysis of
NATS 2.12.1). CheckSync asks the servers, which only a system account user
may do; otherwise the operator must make sure of it.

# Subject layout

Sources are hashed (FNV-1a) over Options.Partitions streams; partition i is
stream "<Name>_<i>" with subjects "<Subject>.<i>.>". Names become subject
tokens as unpadded base64url, so '.', '*', '>', spaces and any UTF-8 are
safe. Every message of a source's stream has one subject:

	<Subject>.<i>.e.<src>.<stream>   an entry: the Pebble store's value,
	                                 uvarint(timestamp) [level] msg
	                                 (storage.PutValue)
	                                 or, with header Logbroker-Tombstone,
	                                 the tombstone of a Delete: the source's
	                                 head as 16 hex digits

An entry's id is its stream sequence. A source lives in one stream, whose
sequence only grows and is never reused (not after a purge, not after a
restart or a leader change), so ids are strictly increasing per source and
never reused, as the Pebble store's. They are not dense: other sources'
entries take the numbers in between. The partition count must not change
for existing data; Open refuses streams made for another count.

# Appends

AppendAsync publishes at once (no goroutine per call) with a reply subject
under the store's inbox and a Nats-Msg-Id unique to the append. A resend
loop publishes again, in order, every append whose acknowledgement is
overdue (Options.AckWait, or at once after "no responders" during a leader
election); the duplicate window makes JetStream store it once and answer
with the first sequence. Done callbacks run in publish order on one
goroutine. Delete first waits until every append issued before it through
the store is complete.

# De-duplication

With Options.DedupWindow > 0, a record with a Dedup key (storage.Record)
is published with the key as its message id ("logbroker-dedup-<hex>")
instead of one of its own, and the streams' duplicate window is at least
DedupWindow (Open raises it on existing streams). JetStream then stores
one message per key within the window, on any node, and acknowledges a
duplicate with the first's sequence: the Entry it returns has that Seq
and Duplicate set. The leader answers so only once the first is stored
on a quorum (stored and synced, with sync_interval always), so the answer
never comes before the first is durable; a duplicate that arrives while
the first is still being stored is refused by JetStream as "in process"
and published again after AckWait, when it gets the first's sequence.
The memory of the window is JetStream's, on the servers (one msg id per
message within the window; the servers rebuild it from the stored
messages' headers after a restart). Entry.Duplicate is also set on an
append whose own first publish was stored but whose acknowledgement was
lost: the two are indistinguishable, and both stored exactly one entry.

# Reads

Head asks the stream leader for the source's last message ("last by
subject" on "<i>.e.<src>.*"): an entry's sequence, or the head a tombstone
holds. Delete writes its tombstone only if the source got no message since
it read that (expected last subject sequence), so no entry hides behind it.

List reads with batched direct gets, answered by the nearest replica, which
may lag the leader: JetStream acknowledges an append once a quorum stored
it, and a restarted replica serves direct gets once about 90% caught up.
So List first asks the leader for the last message of its filter (the
stream's subject, or "<i>.e.<src>.*" for all streams): the fence. An answer
that reaches the fence reflects every append acknowledged and every Delete
finished before List began. An answer that ends before it comes from a
lagging replica: List reads on after a pause. An answer cut by the batch
size before the fence may still hold entries a purge removed: List asks
the leader for the first message of each subject in it (at or after the
query's start) and drops what lies below. Tombstones are never returned.

A List with a Filter (storage.Filter: level, match, regex, since, until)
reads forward from after up to the fence in batches of 1000, keeping what
passes (Filter.Keep, the Pebble store's own matcher): the first Limit, or
the final Last. There are no block summaries here: a time range reads the
whole range of sequences, bounded by the caller's ctx.

Last has no reverse scan in the direct get API: List bisects the sequence
range on the pending counts batch gets report (about log2(range) small
requests), then reads forward from there.

Delete purges the stream's subject with one request, then writes the
tombstone. A purge holds the stream (every source of the partition) while
it runs: BenchmarkDeleteStall measures it. Splitting a purge by sequence
ranges made it slower and the stall longer on nats-server 2.15, so Delete
does not; spread sources over Options.Partitions instead.

# Catalog

Sources and Streams (rpc.Catalog: Log.Sources, Log.Streams) read the
per-subject message counts of stream info from the stream leaders (one
subject per source and stream), then ask the leader for the last message
of each stream they describe; Streams also for its first, to leave a
Delete's tombstone out of the count. A source whose streams were all
deleted is listed Empty with its head. Sources reads every entry subject
of every partition on each call: its cost grows with the number of
sources and streams in the store, not with entries.

# Subscribe

Each Store runs one ordered consumer per partition, created at Open from the
stream's last sequence, and hands what it receives to the subscribers on one
notifier goroutine: every entry appended through any node, once, in
sequence order per source. Entries reach it only once stored on a quorum,
but the consumer may run on a follower, which applies a committed message
before the stream leader (which Head and List's fence ask) may have: so
the notifier first waits until the leader has stored each group, known from
the leader's acknowledgements of this store's appends or else asked (one
message get, a stream info when the leader has nothing at or after it).
Then subscribers see an entry only once Head and List do.

# Caveats

Only appends issued through the same Store are ordered: an append lost in
a leader change is published again and may then be stored after appends
issued later. Without DedupWindow, a device that retries a Log.Log itself
makes a new append (the message id is the store's, not the device's). Head does not count an
entry appended to a stream concurrently with its Delete and purged by it.
Entries removed by the stream limits leave no tombstone: Head goes back if
the limits remove a source's newest entries. If an entry is appended to a stream
between Delete's purge and its tombstone, Streams leaves the stream out
until a later entry follows, and then counts the tombstone as an entry. Every List costs a leader
request besides its direct gets; Head is a leader request.
*/
package jetstream
