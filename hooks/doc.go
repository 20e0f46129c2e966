// Package hooks is the only code that speaks mochi-mqtt on behalf of the log
// service: it catches request frames and hands them to package rpc, and it
// turns rpc's outgoing messages into MQTT publishes.
//
// # Basics
//
// RPC is a mochi hook that provides OnPublish, OnWill and OnDisconnect. A publish on
// <name>/rpc or <name>/rpc/<method>, where <name> is the service id or an
// alias, is a request frame: it is queued on the connection's rpc.Conn and
// answered with packets.CodeSuccessIgnore, so mochi completes the QoS flow
// (PUBACK, PUBREC/PUBREL/PUBCOMP) but never retains it nor delivers it to a
// subscriber. Every other publish passes through untouched, and so do the
// broker's own (inline) publishes, which would otherwise loop. A Last Will
// addressed to the service (which mochi publishes past OnPublish) is
// consumed the same way in OnWill: it runs as the client's last call.
//
// Capture (console capture, PROTOCOL §8) provides OnPublished: a client's
// message on a topic that a CaptureFilters filter matches is handed, after
// mochi delivered it to its subscribers, to rpc.Capture with the source the
// filter's first '+' names. The broker's own publishes are never captured.
// In secured mode Auth lets a device publish to the capture topics of its
// own identity (AllowCapture).
//
// Auth also owns the rule that makes the mos tool work with a device login:
// a connection owns "<service>/rpc-resp/<its client id>" (rpc.Caller.Replies)
// and may subscribe below it, and a client id belongs to one user at a time.
//
// Sender adapts a Publisher (the broker) to rpc.Publisher: responses at QoS 1
// with any MQTT 5 Correlation Data, live entries at QoS 0.
//
// # Caveats
//
// In secured mode Auth refuses a non-admin's frame on another client's RPC
// topic whose src is not the publisher's (trust.go), and does the refusal
// itself (drop, negative acknowledgement or disconnection, as mochi's ACL
// refusal does): mochi v2.7.9 would deliver a publish whose OnPublish
// returned an error code at QoS 0 and from 3.1.1 clients
// (TestMochiOnPublishCodeStillDelivers).
//
// OnPublish and OnPublished run on the publishing client's read loop: they
// never wait for storage. It waits only when that connection already has rpc.Config.QueueLen
// calls queued, which slows that client alone.
package hooks
