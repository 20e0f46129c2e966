package rpc

import "time"

// Observer is told about every call when it ends: answered with a result
// (code 0) or an error (its wire code), or run as a notification. method is
// the normalized name of a method this service serves, or "" when the frame
// named none or an unknown one (so that callers cannot make up new label
// values). d runs from the call's start to its answer: it includes the
// fsync of Log.Log and the wait of a follow. An Observer must be quick and
// safe for concurrent use.
type Observer func(method string, code int, d time.Duration)

// observe reports the end of r to Config.Observe, if set.
func (c *Conn) observe(r *request, code int) {
	fn := c.svc.cfg.Observe
	if fn == nil {
		return
	}
	m := r.method
	if m == "" && r.f != nil {
		// Refused before routing (403, 429, 413...): still name the method.
		m = r.f.Method
		if r.call.HasMethod {
			m = r.call.Method
		}
		m = NormalizeMethod(m)
	}
	if _, ok := c.svc.methods[m]; !ok {
		m = ""
	}
	fn(m, code, time.Since(r.started))
}
