package jetstream

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/logbroker/logbroker/storage/jetstream/jstest"
)

// shared is the cluster most tests use, each with its own stream names.
var shared *jstest.Cluster

func TestMain(m *testing.M) {
	mt := &mainTB{}
	code := func() int {
		defer mt.cleanup()
		shared = jstest.NewCluster(mt, 3)
		return m.Run()
	}()
	os.Exit(code)
}

// mainTB implements tb for TestMain: failures end the process.
type mainTB struct {
	mu    sync.Mutex
	funcs []func()
}

func (*mainTB) Helper() {}

func (mt *mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "test cluster: "+format+"\n", args...)
	mt.cleanup()
	os.Exit(2)
}

func (mt *mainTB) TempDir() string {
	dir, err := os.MkdirTemp("", "logbroker-jetstream-")
	if err != nil {
		mt.Fatalf("temp dir: %v", err)
	}
	mt.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (mt *mainTB) Cleanup(f func()) {
	mt.mu.Lock()
	mt.funcs = append(mt.funcs, f)
	mt.mu.Unlock()
}

func (mt *mainTB) cleanup() {
	mt.mu.Lock()
	funcs := mt.funcs
	mt.funcs = nil
	mt.mu.Unlock()
	for i := len(funcs) - 1; i >= 0; i-- {
		funcs[i]()
	}
}

var storeNo atomic.Int64

// freshOptions returns options naming streams and subjects no other test
// uses.
func freshOptions() Options {
	n := storeNo.Add(1)
	return Options{
		Name:    fmt.Sprintf("T%d", n),
		Subject: fmt.Sprintf("t%d", n),
	}
}
