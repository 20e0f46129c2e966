// Package loadgen drives a logbroker with RPC calls over MQTT and measures
// what it sees: calls per second, call latency, errors by code, timeouts,
// how long followers (Log.List follow) take to see a logged entry, how many
// live log messages dashboards receive, and what idle connections cost.
//
// It is the engine of `logbroker bench`; it speaks to the broker only over
// the network, as any client does, through paho.mqtt.golang.
//
// # Shape of a run
//
// Config.Clients callers each keep Config.Inflight calls in flight: a caller
// publishes a request on <service>/rpc as soon as one of its calls is
// answered (or times out). Responses arrive on <src>/rpc, where src is the
// caller's client id (<prefix>-<i>). A call's latency runs from just before
// its publish to the arrival of its response. The run ends after
// Config.Duration or once Config.Count calls are sent; calls in flight are
// then awaited (up to Config.Timeout) before the figures are taken.
//
// Log.Log writes to Config.Source, or to the caller's own src when Source
// is empty. Followers each keep one Log.List {follow: true} waiting on a
// logged source and measure, for every entry they are answered, the time
// from the Log.Log response of that entry to the follower's answer.
// Dashboards subscribe to +/log/# at QoS 0 and count live messages.
//
// # Caveats
//
// The generator runs on the same machine as the broker in most
// measurements: its own CPU use (paho, JSON) competes with the broker's.
// Compare methods measured in the same run and setup, not absolute rates
// across machines. Responses are scanned for their top-level "id", "error"
// and "result" without a full JSON decode, so that large Log.List answers
// cost the generator little; entry ids are decoded only for followers.
//
// Idle connections are plain TCP sockets that sent an MQTT CONNECT with
// keep-alive 0 and read the CONNACK; they need no goroutine here.
package loadgen
