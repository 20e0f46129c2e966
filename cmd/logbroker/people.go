package main

import (
	"net/http"
	"sync/atomic"

	"github.com/logbroker/logbroker/cmd/internal/dashboard"
	"github.com/logbroker/logbroker/cmd/internal/metrics"
	"github.com/logbroker/logbroker/rpc"
)

// newMetrics makes the /metrics registry over n's service, store and
// broker, read at scrape time (n.svc may be set after this call).
func newMetrics(n *node) *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Service: func() rpc.Stats { return n.svc.Stats() },
		Store:   n.store.Stats,
		Limits:  limitMetrics(n.broker),
		MQTT: func() metrics.MQTT {
			info := n.broker.Server().Info
			drops := n.broker.Drops()
			return metrics.MQTT{
				ClientsConnected: atomic.LoadInt64(&info.ClientsConnected),
				MessagesDropped:  drops.Messages,
				InflightDropped:  drops.Inflight,
				SlowConsumers:    drops.SlowConsumers,
				TooLarge:         drops.TooLarge,
				MessagesReceived: atomic.LoadInt64(&info.MessagesReceived),
				MessagesSent:     atomic.LoadInt64(&info.MessagesSent),
			}
		},
		Refused: func() metrics.Refused {
			if n.auth == nil {
				return metrics.Refused{}
			}
			r := n.auth.Refusals()
			return metrics.Refused{Frames: r.Frames, Wills: r.Wills}
		},
		Capture: func() rpc.CaptureStats {
			if n.capture == nil {
				return rpc.CaptureStats{}
			}
			return n.capture.Stats()
		},
	})
}

// newDashboard is the page served at / once the broker's listeners are
// bound (it needs the WebSocket address).
func newDashboard(c *serveConfig, n *node) http.Handler {
	return dashboard.New(dashboard.Config{
		Service: c.id,
		WSAddr:  n.broker.WSAddr(),
		TLS:     n.tls,
		Secured: n.mode == "secured",
	})
}
