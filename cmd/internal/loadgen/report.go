package loadgen

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteText writes r for people: one line per aspect.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "method     %s against %s: %d clients x %d in flight, qos %d", r.Method, r.Broker, r.Clients, r.Inflight, r.QoS)
	if r.MsgSize > 0 {
		fmt.Fprintf(w, ", msg %d B", r.MsgSize)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "calls      %d sent, %d ok, %d failed, %d timed out, %d lost in %.2fs\n", r.Calls, r.OK, r.Failed, r.Timeouts, r.Lost, r.Seconds)
	fmt.Fprintf(w, "rate       %.0f calls/s\n", r.Rate)
	fmt.Fprintf(w, "latency    %s\n", r.Latency)
	fmt.Fprintf(w, "errors     %s\n", errorList(r.Errors))
	if r.BrokerPID > 0 {
		fmt.Fprintf(w, "cpu        broker pid %d used %.2fs CPU, %.1f µs per call\n", r.BrokerPID, r.CPUSeconds, r.CPUPerCall)
	}
	if r.Entries > 0 && r.OK > 0 {
		fmt.Fprintf(w, "entries    %d returned, %.1f per call\n", r.Entries, float64(r.Entries)/float64(r.OK))
	}
	if f := r.Follow; f != nil {
		fmt.Fprintf(w, "follow     %d followers, %d answers, %d/%d entries seen (%d missed, %d before the logger's response)\n",
			f.Followers, f.Answers, f.Seen, f.Expected, f.Missed, f.Early)
		fmt.Fprintf(w, "follow lat %s (Log.Log response to follower answer)\n", f.Latency)
	}
	if d := r.FanOut; d != nil {
		fmt.Fprintf(w, "fan-out    %d dashboards, %d/%d live messages received (%d dropped), %.0f messages delivered/s (responses + live)\n",
			d.Dashboards, d.Received, d.Expected, d.Dropped, d.Delivered)
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(w, "idle       %d connections held (%d failed)", i.Connections, i.Failed)
		if i.PID > 0 {
			fmt.Fprintf(w, "; pid %d VmRSS %.1f -> %.1f MiB, %.1f KiB per connection",
				i.PID, float64(i.RSSBefore)/(1<<20), float64(i.RSSAfter)/(1<<20), i.PerConn/1024)
		}
		fmt.Fprintln(w)
	}
	if a := r.Attack; a != nil {
		fmt.Fprintf(w, "attack     %s: %d connections, %d calls, %d failures\n", a.Name, a.Connects, a.Calls, a.Failures)
	}
}

func (l Latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.3gms  p99 %.3gms  p99.9 %.3gms  max %.3gms  mean %.3gms  (%d samples)", l.P50, l.P99, l.P999, l.Max, l.Mean, l.Count)
}

func errorList(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var b strings.Builder
	for i, c := range codes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", c, m[c])
	}
	return b.String()
}
