package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logbroker/logbroker/storage"
)

// TestServeRetentionFlags: the retention flags (and their environment
// twins) parse, are off by default, and negative values are refused before
// the data directory is touched. (The store's tests cover retention.)
func TestServeRetentionFlags(t *testing.T) {
	t.Run("Parsed", func(t *testing.T) {
		fs, c := serveFlags(io.Discard)
		t.Setenv("LOGBROKER_MAX_BYTES_PER_SOURCE", "1048576")
		if err := parseFlags(fs, []string{"--retention-age", "720h", "--max-entries-per-stream", "1000"}); err != nil {
			t.Fatal(err)
		}
		if c.retentionAge != 720*time.Hour || c.maxEntriesPerStream != 1000 || c.maxBytesPerSource != 1<<20 {
			t.Errorf("parsed %v %d %d", c.retentionAge, c.maxEntriesPerStream, c.maxBytesPerSource)
		}
	})
	t.Run("OffByDefault", func(t *testing.T) {
		c := testConfig(t)
		if c.retentionAge != 0 || c.maxEntriesPerStream != 0 || c.maxBytesPerSource != 0 {
			t.Errorf("defaults %v %d %d, want all 0 (off)", c.retentionAge, c.maxEntriesPerStream, c.maxBytesPerSource)
		}
		if c.minFreeBytes != storage.DefaultMinFreeBytes {
			t.Errorf("--min-free-bytes default %d, want %d", c.minFreeBytes, storage.DefaultMinFreeBytes)
		}
	})
	t.Run("RefusesNegative", func(t *testing.T) {
		c := testConfig(t)
		c.retentionAge = -time.Hour
		n, err := startTestNode(t, c)
		if err == nil {
			closeNode(t, n)
			t.Fatal("negative --retention-age accepted")
		}
		if !strings.Contains(err.Error(), "must not be negative") {
			t.Errorf("error %q", err)
		}
		if _, err := os.Stat(c.dataDir); !os.IsNotExist(err) {
			t.Errorf("data directory %s exists after a refused start (stat: %v)", c.dataDir, err)
		}
	})
}
