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
// # Methods
//
// Log.Log, Log.List (with follow) and Log.Delete run against LogStore;
// Log.Sources and Log.Streams are served when the store also implements
// Catalog (the Pebble store does), and are absent from RPC.List (404)
// otherwise. RPC.List and RPC.Ping touch no storage. Who may call what is
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
// # Follow
//
// A Log.List with follow that finds nothing registers a follower in the hub,
// then reads once more, so an entry made durable in between is never missed.
// Followers hold no goroutine: a time.AfterFunc bounds each one, and the
// fanout goroutine, fed by LogStore.Subscribe after every durable commit,
// publishes live topics and wakes followers. Whoever claims a follower first
// (wake, timer, disconnect, shutdown) answers it; the others do nothing.
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
