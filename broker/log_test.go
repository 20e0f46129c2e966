package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestQuietHandler(t *testing.T) {
	cases := []struct {
		name  string
		level slog.Level // of the underlying handler
		log   func(*slog.Logger)
		want  string // "" = nothing written
		not   string // must not appear
	}{
		{"WarningsHidden", slog.LevelInfo, func(l *slog.Logger) { l.Warn("", "error", io.EOF) }, "", ""},
		{"WarningsAtDebug", slog.LevelDebug, func(l *slog.Logger) {
			l.Warn("client store quota reached", "error", fmt.Errorf("read: %w", net.ErrClosed))
		}, "level=DEBUG", ""},
		{"InfoHidden", slog.LevelInfo, func(l *slog.Logger) { l.Info("attached listener") }, "", ""},
		{"PacketDumpDropped", slog.LevelDebug, func(l *slog.Logger) {
			l.Warn("error processing packet", "error", errors.New("bad"), "client", "c1", "pk", packets.Packet{Payload: []byte("secret log line")})
		}, "client=c1", "secret"},
		{"ErrorsStay", slog.LevelInfo, func(l *slog.Logger) { l.Error("listener stopped", "error", io.EOF) }, "level=ERROR", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			base := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level})
			tc.log(slog.New(quietHandler{base}).With("component", "mqtt"))
			out := buf.String()
			switch {
			case tc.want == "" && out != "":
				t.Errorf("wrote %q, want nothing", out)
			case tc.want != "" && !strings.Contains(out, tc.want):
				t.Errorf("wrote %q, want it to contain %q", out, tc.want)
			case tc.not != "" && strings.Contains(out, tc.not):
				t.Errorf("wrote %q, which contains %q", out, tc.not)
			}
		})
	}
}
