// Package rpcclient is the client side of logbroker's RPC over MQTT
// (PROTOCOL.md): it connects one paho MQTT client, subscribes to its own
// reply topic <src>/rpc, and turns calls into request frames on
// <service>/rpc and their responses back into results or typed errors.
//
// # Basics
//
// Dial connects and returns once the client is subscribed to <src>/rpc, so
// no response can be missed. Call publishes one frame
//
//	{"id":N,"src":"<src>","method":"Log.List","args":{...}}
//
// at QoS 1 and waits for the response whose id is N. A response with an
// error object becomes a *CallError; its Error() reads like
// "error 404: no such method: Foo". Calls may run concurrently; ids start at
// a random number so that processes sharing a src do not mistake each
// other's responses.
//
// The client reconnects on its own (paho auto-reconnect) and subscribes
// again before any new call is published.
//
// # Caveats
//
// A request is never resent by the MQTT layer: a call whose connection is
// lost before its response arrives fails with ErrConnectionLost, and the
// caller decides whether to call again (the request may or may not have
// taken effect). Log.List follows, which are idempotent given `after`, are
// simply re-issued; a Log.Log may be retried at the risk of a duplicate.
package rpcclient
