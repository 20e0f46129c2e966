package broker

import (
	"context"
	"log/slog"
)

// quietHandler sits between mochi and the configured logger, by level and
// attribute key only (it never reads a record's text). mochi warns about
// what single clients do (a connection ended without DISCONNECT, a
// malformed packet, a full in-flight map, a short keep-alive), many times
// a second under a hostile client: its warnings become debug records.
// The broker reports what an operator must act on itself, once per client
// (a slow consumer, drops). mochi's errors stay errors. The "pk" and
// "packet" attributes are never passed on: they hold a whole packet,
// payload included, and a payload is a device's log data.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, quietLevel(l))
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, quietLevel(r.Level), r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pk" && a.Key != "packet" {
			out.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, out)
}

// quietLevel is the level a record of mochi's is logged at.
func quietLevel(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return l
	}
	return slog.LevelDebug
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}
