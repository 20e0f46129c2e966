package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// filterFlags are the Log.List filters (PROTOCOL §5) as tail and export
// take them.
type filterFlags struct {
	level, match, regex, since, until string
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fs.StringVar(&f.level, "level", "", "only entries with a level at most this severe: error, warn, info, debug, verbose or 0..4")
	fs.StringVar(&f.match, "match", "", "only entries whose text contains this, ignoring case")
	fs.StringVar(&f.regex, "regex", "", "only entries whose text matches this RE2 regular expression ((?i) ignores case)")
	fs.StringVar(&f.since, "since", "", "only entries with a timestamp at or after this: a duration ago (1h, 30m) or an RFC 3339 time")
	fs.StringVar(&f.until, "until", "", "only entries with a timestamp before this: a duration ago or an RFC 3339 time")
	return f
}

// args returns the filters as Log.List arguments, times resolved against
// now; an empty map when none is set.
func (f *filterFlags) args(now time.Time) (map[string]any, error) {
	out := map[string]any{}
	if f.level != "" {
		if n, err := strconv.Atoi(f.level); err == nil {
			out["level"] = n
		} else {
			out["level"] = f.level
		}
	}
	if f.match != "" {
		out["match"] = f.match
	}
	if f.regex != "" {
		out["regex"] = f.regex
	}
	for _, t := range []struct{ name, val string }{{"since", f.since}, {"until", f.until}} {
		if t.val == "" {
			continue
		}
		ms, err := parseTime(t.val, now)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", t.name, t.val, err)
		}
		out[t.name] = ms
	}
	return out, nil
}

// parseTime reads a point in time for --since and --until: a duration
// (that long before now) or an RFC 3339 time. It returns milliseconds
// since the epoch.
func parseTime(s string, now time.Time) (int64, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("a duration ago must not be negative")
		}
		return max(now.Add(-d).UnixMilli(), 0), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("not a duration (1h, 30m) nor an RFC 3339 time (%s)", strings.ReplaceAll(time.RFC3339, "Z07:00", "Z"))
	}
	if t.UnixMilli() < 0 {
		return 0, fmt.Errorf("before 1970")
	}
	return t.UnixMilli(), nil
}
