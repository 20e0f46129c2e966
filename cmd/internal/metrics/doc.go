// Package metrics exposes logbroker's numbers to Prometheus on /metrics.
//
// It owns no counters of its own except the per-call ones: rpc, storage and
// the broker keep theirs (rpc.Service.Stats, storage.Store.Stats, mochi's
// system.Info) and a Collector reads them at scrape time, so those packages
// know nothing of Prometheus. Calls are counted through rpc.Config.Observe
// (Metrics.Observe), the one hook that sees each call's method, code and
// duration.
//
// # Metrics
//
//	logbroker_rpc_calls_total{method,code}            calls ended; code "0" is success
//	logbroker_rpc_call_duration_seconds{method}       histogram, start to answer
//	logbroker_rpc_dropped_frames_total                frames nobody could be answered for
//	logbroker_rpc_follows_waiting                     Log.List follow calls waiting now
//	logbroker_rpc_live_published_total                entries published on <src>/log/<stream>
//	logbroker_store_entries_total                     entries made durable
//	logbroker_store_bytes_total                       bytes of their msg
//	logbroker_store_deletes_total                     Log.Delete calls made durable
//	logbroker_store_expired_total                     entries removed by retention
//	logbroker_store_fsyncs_total                      synced batches (group commits)
//	logbroker_store_entries_per_fsync                 histogram of entries per synced batch
//	logbroker_store_disk_bytes                        Pebble's disk use (WAL, tables)
//	logbroker_mqtt_clients_connected                  MQTT connections now
//	logbroker_mqtt_messages_dropped_total             messages dropped for slow subscribers
//	logbroker_mqtt_inflight_dropped_total             QoS 1/2 messages dropped: too many unacknowledged
//	logbroker_mqtt_slow_consumers_total               clients disconnected for not reading
//	logbroker_mqtt_messages_received_total            PUBLISH packets received
//	logbroker_mqtt_messages_sent_total                PUBLISH packets sent
//
// plus the Go runtime and process collectors (go_*, process_*).
//
// # Caveats
//
// method is "unknown" for a frame without a method or with one the service
// does not serve, so clients cannot mint label values. The Log.List
// latency includes the wait of follow calls (up to --follow-max), so its
// upper buckets measure idle tails, not slowness.
package metrics
