package hooks

import (
	"fmt"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/logbroker/logbroker/rpc"
)

// CaptureFilters are the topic filters of console capture (--capture,
// PROTOCOL §8). A message on a topic one of them matches is stored by
// rpc.Capture, its source being the topic level that the filter's first '+'
// matches.
type CaptureFilters []string

// ParseCaptureFilters checks filters: each a valid topic filter with a '+'
// level (it names the source), not under '$'.
func ParseCaptureFilters(filters []string) (CaptureFilters, error) {
	for _, f := range filters {
		switch {
		case !validMQTTTopic(f, false):
			return nil, fmt.Errorf("capture filter %q: not a valid MQTT topic filter", f)
		case strings.HasPrefix(f, "$"):
			return nil, fmt.Errorf("capture filter %q: topics under '$' are not device topics", f)
		case !slices.Contains(strings.Split(f, "/"), "+"):
			return nil, fmt.Errorf("capture filter %q: needs a '+' level, which names the source (as in +/log)", f)
		}
	}
	return CaptureFilters(filters), nil
}

// Source returns the source of a message on topic: the level that the
// first matching filter's first '+' matches; false if no filter matches.
func (fs CaptureFilters) Source(topic string) (string, bool) {
	for _, f := range fs {
		if !covers(f, topic) {
			continue
		}
		levels := strings.Split(topic, "/")
		for i, l := range strings.Split(f, "/") {
			if l == "+" {
				return levels[i], true
			}
		}
	}
	return "", false
}

// Capture hands the messages that capture filters match to rpc.Capture,
// once mochi has delivered them to their subscribers (capture takes
// nothing away from them). The broker's own publishes are never captured.
type Capture struct {
	mqtt.HookBase
	filters CaptureFilters
	c       *rpc.Capture
}

// NewCapture makes the hook.
func NewCapture(c *rpc.Capture, filters CaptureFilters) *Capture {
	return &Capture{filters: filters, c: c}
}

// ID names the hook in mochi's logs.
func (h *Capture) ID() string { return "logbroker-capture" }

// Provides reports the events the hook handles.
func (h *Capture) Provides(b byte) bool { return b == mqtt.OnPublished }

// OnPublished captures a client's message on a capture topic. mochi calls
// it on the publishing client's goroutine, after the ACL check and
// delivery, so one connection's messages are captured in their order.
func (h *Capture) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.Ignore {
		return
	}
	if src, ok := h.filters.Source(pk.TopicName); ok {
		h.c.Write(src, pk.Payload)
	}
}

// AllowCapture lets a device publish to the topics of its own identity that
// filters match (PROTOCOL §8: dev1 may publish its console to dev1/log);
// a topic naming another identity stays refused. Call it before the broker
// starts.
func (a *Auth) AllowCapture(filters CaptureFilters) { a.capture = filters }

// mayCapture reports whether u may publish to topic as console capture.
// Never to a live topic (<src>/log/<stream>, which a filter such as
// +/log/# matches): there a device would forge entries for dashboards.
func (a *Auth) mayCapture(u User, topic string) bool {
	if u.Role != rpc.RoleDevice || !validMQTTTopic(topic, true) {
		return false
	}
	if levels := strings.Split(topic, "/"); len(levels) >= 3 && levels[len(levels)-2] == "log" {
		return false
	}
	src, ok := a.capture.Source(topic)
	return ok && src == u.Name
}
