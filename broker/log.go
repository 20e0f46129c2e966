package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// quietHandler sits between mochi and the configured logger. mochi warns,
// with an empty message, every time a client's connection ends without a
// DISCONNECT, and at shutdown for every connection it closes; those become
// debug records. It also never passes on the "pk" attribute of "error
// processing packet": that is the whole packet, payload included, and a
// payload is a device's log data.
type quietHandler struct{ slog.Handler }

// quotaReached is mochi's warning, for every QoS 1 or 2 message dropped,
// that a client holds its maximum of unacknowledged messages: it becomes a
// debug record (dropLog reports the client when it goes; Drops counts).
const quotaReached = "client store quota reached"

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if r.Message == quotaReached {
		out.Level = slog.LevelDebug // once per message dropped; dropLog logs the client once
	}
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case a.Key == "pk":
			return true
		case a.Key == "error" && r.Level == slog.LevelWarn && connEnded(a.Value):
			out.Level = slog.LevelDebug
		}
		out.AddAttrs(a)
		return true
	})
	if out.Level != r.Level && !h.Handler.Enabled(ctx, out.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, out)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

// connEnded reports whether v is an error that only says a connection ended.
func connEnded(v slog.Value) bool {
	err, ok := v.Any().(error)
	if !ok {
		return false
	}
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, syscall.ECONNRESET, syscall.EPIPE,
		mqtt.ErrConnectionClosed, ErrSlowConsumer} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
