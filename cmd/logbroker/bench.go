package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/logbroker/logbroker/cmd/internal/loadgen"
)

// benchConfig is everything `logbroker bench` reads from flags.
type benchConfig struct {
	gen         loadgen.Config
	qos         uint
	ca          string
	tlsInsecure bool
	embedded    bool
	data        string
	jsonOut     bool
	cpuProfile  string
	memProfile  string
}

func benchFlags(stderr io.Writer) (*flag.FlagSet, *benchConfig) {
	c := &benchConfig{}
	g := &c.gen
	fs := newFlagSet("bench", "bench [flags]   (load generator: calls/s, latency, errors)", stderr)
	fs.StringVar(&g.Broker, "broker", "tcp://127.0.0.1:1883", "broker URL: tcp://host:port, ssl://host:port, ws://host:port/mqtt or wss://...")
	fs.StringVar(&g.User, "user", "", "MQTT username (secured mode)")
	fs.StringVar(&g.Password, "password", "", "MQTT password (prefer the environment variable)")
	fs.StringVar(&c.ca, "ca", "", "PEM file of the CA that signed the broker's certificate (ssl://, wss://)")
	fs.BoolVar(&c.tlsInsecure, "tls-insecure", false, "do not verify the broker's certificate (test certificates only)")
	fs.StringVar(&g.Service, "id", "logbroker", "service id of the broker: requests go to <id>/rpc")
	fs.StringVar(&g.Prefix, "prefix", "bench", "client ids and default srcs are <prefix>-<n>")
	fs.IntVar(&g.Clients, "clients", 16, "MQTT connections making calls")
	fs.IntVar(&g.Inflight, "inflight", 32, "calls in flight per client")
	fs.StringVar(&g.Method, "method", loadgen.MethodLog, "method to call: Log.Log, Log.List or RPC.Ping")
	fs.IntVar(&g.MsgSize, "msg-size", 100, "bytes of each Log.Log msg (a JSON string)")
	fs.UintVar(&c.qos, "qos", 1, "QoS of requests and of the response subscription: 0, 1 or 2")
	fs.DurationVar(&g.Duration, "duration", 10*time.Second, "how long to make calls (with --count: whichever ends first; 0: until --count)")
	fs.Int64Var(&g.Count, "count", 0, "calls to make in total; 0: until --duration")
	fs.Float64Var(&g.Rate, "rate", 0, "calls per second in total; 0: as fast as the broker answers")
	fs.DurationVar(&g.Timeout, "timeout", 10*time.Second, "a call unanswered this long counts as timed out")
	fs.StringVar(&g.Source, "source", "", "src Log.Log writes to (on behalf of) and Log.List reads; empty: each client's own")
	fs.IntVar(&g.Streams, "streams", 1, "Log.Log spreads its entries over this many streams (s0, s1, ...); 1: stream console")
	fs.StringVar(&g.ListStream, "list-stream", "", "stream Log.List reads; empty: all streams of the source")
	fs.IntVar(&g.ListLast, "list-last", 100, "Log.List's last: how many of the newest entries each call asks for")
	fs.IntVar(&g.Followers, "followers", 0, "clients each keeping a Log.List follow waiting on a logged source; measures Log.Log response to follower answer")
	fs.IntVar(&g.Dashboards, "dashboards", 0, "clients subscribed to +/log/# at QoS 0, counting live messages (dropped = logged - received)")
	fs.IntVar(&g.Idle, "idle", 0, "idle MQTT connections held open during the run (tcp:// only)")
	fs.StringVar(&g.Attack, "attack", "", "hostile clients run beside the callers (tcp:// only): tiny-packet (MQTT 5, Maximum Packet Size 16, Log.Log at 200/s), takeover (8 persistent sessions reconnecting, one call each), no-connack (2 MQTT 5 sessions reconnecting with Maximum Packet Size 2); empty: none")
	fs.IntVar(&g.BrokerPID, "broker-pid", 0, "the broker's process id: reports its CPU time per call and its VmRSS around --idle connections (--embedded: this process, client included)")
	fs.BoolVar(&c.embedded, "embedded", false, "start a broker in this process on a temporary directory and port 0, and measure it (--broker then only chooses tcp:// or ws://)")
	fs.StringVar(&c.data, "embedded-data", "", "with --embedded: the store directory (kept); empty: a temporary one, removed afterwards")
	fs.BoolVar(&c.jsonOut, "json", false, "print the result as one JSON object")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (with --embedded it covers the broker too)")
	fs.StringVar(&c.memProfile, "memprofile", "", "write an allocation profile of the run to this file")
	return fs, c
}

// bench runs the load generator, against --broker or an embedded broker.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := benchFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.qos > 2 {
		return fmt.Errorf("--qos %d: want 0, 1 or 2", c.qos)
	}
	c.gen.QoS, c.gen.QoSSet = byte(c.qos), true
	if c.gen.Duration <= 0 && c.gen.Count <= 0 {
		return errors.New("--duration 0 needs a --count")
	}
	if err := c.tlsConfig(); err != nil {
		return err
	}
	c.gen.Warnf = func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	if isTerminal(stdout) {
		c.gen.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(stdout, "\r\033[K%5.0fs  %d ok  %d failed  %d timed out  %.0f calls/s",
				p.Elapsed.Seconds(), p.OK, p.Failed, p.Timeouts, p.Rate)
		}
	}

	if c.embedded {
		cleanup, err := c.startEmbedded(stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		if c.gen.BrokerPID == 0 {
			c.gen.BrokerPID = os.Getpid()
		}
	}

	stopProfile, err := c.startProfiles()
	if err != nil {
		return err
	}
	res, err := loadgen.Run(ctx, c.gen)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	if c.gen.Progress != nil {
		fmt.Fprint(stdout, "\r\033[K")
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.WriteText(stdout)
	}
	if !res.Succeeded() {
		return fmt.Errorf("bench: not every call succeeded: %d ok, %d failed, %d timed out, %d lost", res.OK, res.Failed, res.Timeouts, res.Lost)
	}
	return nil
}

// startEmbedded starts a broker in this process, as `serve` would with its
// defaults, on loopback port 0, and points the generator at it.
func (c *benchConfig) startEmbedded(stderr io.Writer) (cleanup func(), err error) {
	sfs, sc := serveFlags(io.Discard)
	if err := sfs.Parse(nil); err != nil { // serve's defaults, without its environment
		return nil, err
	}
	ws := strings.HasPrefix(c.gen.Broker, "ws://")
	sc.mqttAddr, sc.wsAddr, sc.httpAddr = "127.0.0.1:0", "", ""
	if ws {
		sc.wsAddr = "127.0.0.1:0"
	}
	sc.id = c.gen.Service
	// The embedded broker measures the ceiling: serve's per-connection
	// rate limit (--rate) would cap each benchmark client instead.
	sc.rate = 0
	removeData := func() {}
	if c.data != "" {
		sc.dataDir = c.data
	} else {
		dir, err := os.MkdirTemp("", "logbroker-bench-")
		if err != nil {
			return nil, err
		}
		sc.dataDir = dir
		removeData = func() { _ = os.RemoveAll(dir) }
	}
	log, err := newLogger(stderr, "text", "error")
	if err != nil {
		removeData()
		return nil, err
	}
	n, err := startNode(sc, log)
	if err != nil {
		removeData()
		return nil, err
	}
	c.gen.Broker = "tcp://" + n.broker.MQTTAddr()
	if ws {
		c.gen.Broker = "ws://" + n.broker.WSAddr() + "/mqtt"
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), sc.shutdownTimeout)
		defer cancel()
		n.Close(ctx)
		removeData()
	}, nil
}

func (c *benchConfig) tlsConfig() error {
	if c.ca == "" && !c.tlsInsecure {
		return nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.tlsInsecure} //nolint:gosec // asked for by --tls-insecure
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no PEM certificate in it", c.ca)
		}
	}
	c.gen.TLS = conf
	return nil
}

// startProfiles starts the profiles asked for; stop writes them.
func (c *benchConfig) startProfiles() (stop func() error, err error) {
	var cpu *os.File
	if c.cpuProfile != "" {
		if cpu, err = os.Create(c.cpuProfile); err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	return func() error {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
		}
		if c.memProfile != "" {
			f, err := os.Create(c.memProfile)
			if err != nil {
				return fmt.Errorf("--memprofile: %w", err)
			}
			runtime.GC()
			werr := pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return fmt.Errorf("--memprofile: %w", werr)
			}
		}
		return nil
	}, nil
}
