// Package rpc is the log service: the frame codec, the router, the error
// codes, and the Log methods, over any storage backend that implements
// LogStore. It knows nothing of MQTT: package hooks hands it frames (Call) and
// gives it a Publisher.
//
// # Basics
//
// A Service has one Conn per MQTT connection. Calls submitted to a Conn run
// in order on that Conn's goroutine. Log.Log queues its record with
// LogStore.AppendAsync and moves on: the response is sent when the entry is
// durable, and many connections' entries share one fsync. A later List waits
// for the connection's earlier Log.Log calls, so a connection always reads
// its own writes; Delete is ordered after them by the store.
//
// With Config.Dedup, a Log.Log call with an id gives its record a Dedup key
// (DedupKey: SHA-256 of src, id and payload): a store that de-duplicates
// answers a resent frame with the first entry (Entry.Duplicate), which is
// answered as the first was and not published live again.
//
// FrameSrc and Caller.Owns serve package hooks, which checks frames that
// clients publish to one another: the src a receiver would read, and
// whether it is one of the publisher's own sources (the rule the service's
// 403 uses too).
//
// # Methods
//
// Log.Log, Log.List (with follow) and Log.Delete run against LogStore;
// Log.Sources, Log.Streams and Log.Fleet are served when the store also
// implements Catalog (both backends do), and are absent from RPC.List (404)
// otherwise. Log.Fleet answers from memory (fleet.go): per-source minute
// counts fed on the fanout goroutine, the sources seeded and refreshed from
// the catalog, bounded by Config.FleetMax. RPC.List and RPC.Ping touch no storage. Who may call what is
// one table, methodAccess in authz.go; Config.Observe, when set, sees every
// answered call's method, code and duration (for metrics).
//
// # Frames
//
// DecodeFrame matches keys exactly ("ID" is not "id"), takes the last of
// duplicate keys, and sorts failures into two kinds: ErrDropped (no JSON
// object, or no usable src: nobody to answer) and *Error (answered with its
// code). A frame must be UTF-8 throughout (RFC 8259 §8.1): invalid bytes
// anywhere are a 400, and dropped when they are in the id, which could not
// be echoed. Responses are built by hand as bytes: the id is echoed byte for
// byte, so 7, 7.0 and "7" come back as sent. testdata/frames holds the
// codec's cases, one rule each.
//
// # Filters
//
// Log.Log's level and Log.List's filters (level, match, regex, since,
// until) are parsed here into a storage.Filter, made once per call; the
// store applies it while it scans, and a waiting follower tests each new
// entry with it (Filter.Keep), so a non-matching entry does not answer it.
// A filtered List's scan is bounded by the frame's timeout or deadline
// (capped at Config.FollowMax), else Config.ScanTimeout: when it runs out
// the call is answered 504, never with a part of the result. The scan runs
// on the connection's goroutine: it holds up that connection's later calls,
// not other connections'. Followers with filters never share an encoded
// answer (followers at the same position without filters do).
//
// # Follow
//
// A Log.List with follow that finds nothing registers a follower in the hub,
// then reads once more, so an entry made durable in between is never missed.
// Followers hold no goroutine: a time.AfterFunc bounds each one, and the
// fanout goroutine, fed by LogStore.Subscribe after every durable commit,
// publishes live topics and wakes followers. Whoever claims a follower first
// (wake, timer, disconnect, shutdown) answers it; the others do nothing.
//
// # Console capture
//
// Service.Capture starts a Capture: hooks hands it the console messages of
// stock Mongoose OS devices ("<device_id> <seq> <time> <n>|<text>"), and it
// joins the writes of each source and stream into lines, stored with
// LogStore.AppendAsync like Log.Log's entries. A partial line waits for its
// continuation under a time.AfterFunc (CaptureConfig.FlushAfter); seq gaps
// and restarts are counted per source, in memory, and shown by Log.Sources.
// Partial lines, tracked sources and each source's message rate are
// bounded (CaptureConfig); Shutdown stores the partial lines left.
//
// # Caveats
//
// Answers of Log.Log are published from the storage committer's goroutine
// (the done callback of AppendAsync), and live entries from the fanout
// goroutine. Neither waits on a client: the Publisher the service is
// given (hooks.Sender over broker.Broker) only appends to the client's
// outbox, which never blocks, sleeps or takes a lock a client's
// connection can hold; a slow client is cut off there, alone.
//
// A connection's queue holds Config.QueueLen calls; past that, Submit waits,
// which stalls that connection's MQTT reader only, and only until Close
// (Shutdown closes every connection; a call waiting then gets 503). Calls of
// one connection after a waiting follow do not wait for it.
package rpc
