package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"
	"time"
)

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseArgs(t *testing.T) {
	newFS := func() (*flag.FlagSet, *string, *bool) {
		fs := newFlagSet("t", "t", io.Discard)
		stream := fs.String("stream", "console", "")
		follow := fs.Bool("f", false, "")
		return fs, stream, follow
	}
	for _, c := range []struct {
		name    string
		args    []string
		env     string // LOGBROKER_STREAM
		pos     []string
		stream  string
		follow  bool
		wantErr error
	}{
		{name: "FlagsFirst", args: []string{"-f", "--stream", "s", "dev1"}, pos: []string{"dev1"}, stream: "s", follow: true},
		{name: "Interspersed", args: []string{"dev1", "-f", "boot", "--stream=s", "ok"}, pos: []string{"dev1", "boot", "ok"}, stream: "s", follow: true},
		{name: "DashDash", args: []string{"-f", "--", "-x", "--stream", "y"}, pos: []string{"-x", "--stream", "y"}, stream: "console", follow: true},
		{name: "Env", args: []string{"dev1"}, env: "fromenv", pos: []string{"dev1"}, stream: "fromenv"},
		{name: "FlagBeatsEnv", args: []string{"--stream", "flag"}, env: "fromenv", stream: "flag"},
		{name: "Help", args: []string{"dev1", "-h"}, wantErr: flag.ErrHelp},
		{name: "Unknown", args: []string{"--nope"}, wantErr: errUsage},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("LOGBROKER_STREAM", c.env)
			}
			fs, stream, follow := newFS()
			pos, err := parseArgs(fs, c.args)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, c.pos) || *stream != c.stream || *follow != c.follow {
				t.Errorf("pos %q stream %q follow %v; want %q %q %v", pos, *stream, *follow, c.pos, c.stream, c.follow)
			}
		})
	}
}
