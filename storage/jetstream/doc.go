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
replicas, limits retention (Options.MaxAge, MaxBytes, MaxMsgs), a duplicate
window, direct get allowed. An entry is acknowledged once JetStream stored
it on a quorum of replicas. That is durable only if every NATS server runs
with

	jetstream { sync_interval: always }

since by default JetStream acknowledges writes it has not synced to disk
(acknowledged entries were lost that way in a published Jepsen analysis of
NATS 2.12.1). A client cannot read that setting; the operator must set it.

# Subject layout

Sources are hashed (FNV-1a) over Options.Partitions streams; partition i is
stream "<Name>_<i>" with subjects "<Subject>.<i>.>". Names become subject
tokens as unpadded base64url, so '.', '*', '>', spaces and any UTF-8 are
safe:

	<Subject>.<i>.e.<src>.<stream>   one entry: uvarint(timestamp) msg
	<Subject>.<i>.h.<src>            head marker: 16 hex digits, written by Delete

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

# Reads

Reads use direct get, answered by the stream replica nearest to the node.
A replica may lag the leader, so every List and Head first takes a fence:
the leader's last stored message (a leader-only get), then a direct get of
that message; until the replica has it, the read retries. Entries acknowledged
and purges finished before the call are therefore always seen. A read of
one stream filters on its subject, of all streams on "<i>.e.<src>.*";
batched direct gets return them in sequence order. Last has no reverse scan
in the direct get API: it bisects the sequence range on the pending counts
batch gets report, about log2(range) small requests.

Delete purges the stream's subject, at most Options.PurgeChunk entries per
purge request (a purge holds the stream while it runs), then writes the
source's head marker, so Head still counts the deleted entries. Head is the
larger of the source's last entry and its last marker.

# Subscribe

Each Store runs one ordered consumer per partition, created at Open from the
stream's last sequence, and hands what it receives to the subscribers on one
notifier goroutine: every entry appended through any node, once, in
sequence order per source. Entries reach it only once stored on a quorum,
and the fence makes them listable by the time subscribers run.

# Caveats

Only appends issued through the same Store are ordered: an append lost in
a leader change is published again and may then be stored after appends
issued later. A device that retries a Log.Log itself makes a new append
(the message id is the store's, not the device's). Head does not count an
entry appended concurrently with a Delete of its own stream (it is purged
before the marker is written). Entries removed by the stream limits leave
no marker. Every read pays for its fence: two small requests.
*/
package jetstream
