package metrics

import "github.com/prometheus/client_golang/prometheus"

var (
	descConnectTimeouts  = desc("logbroker_mqtt_connect_timeouts_total", "Connections closed because no whole CONNECT arrived within --connect-timeout.")
	descConnsRefused     = desc("logbroker_mqtt_connections_refused_total", "CONNECTs refused because --max-conns connections were open.")
	descSubsRefused      = desc("logbroker_mqtt_subscriptions_refused_total", "Subscription filters refused because the session held --max-subs-per-client.")
	descSessionsExpired  = desc("logbroker_mqtt_sessions_expired_total", "Persistent sessions ended by their expiry (--session-expiry-max or the client's own), their subscriptions freed.")
	descKeepaliveRefused = desc("logbroker_mqtt_keepalive_refused_total", "MQTT 3.1.1 CONNECTs refused for a keep-alive above --max-keepalive (or none).")
)

// limitsCollector reads the broker's limit counters at scrape time.
type limitsCollector func() Limits

func (c limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnectTimeouts, descConnsRefused, descSubsRefused, descSessionsExpired, descKeepaliveRefused} {
		ch <- d
	}
}

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c()
	for _, v := range []struct {
		d *prometheus.Desc
		n int64
	}{
		{descConnectTimeouts, st.ConnectTimeouts},
		{descConnsRefused, st.ConnsRefused},
		{descSubsRefused, st.SubsRefused},
		{descSessionsExpired, st.SessionsExpired},
		{descKeepaliveRefused, st.KeepaliveRefused},
	} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
	}
}
