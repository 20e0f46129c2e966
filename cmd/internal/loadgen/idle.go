package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// openIdle opens cfg.Idle MQTT connections that then stay silent (keep-alive
// 0), reading cfg.BrokerPID's resident memory before and after.
func openIdle(ctx context.Context, cfg Config) (*IdleResult, func(), error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return nil, nil, err
	}
	res := &IdleResult{PID: cfg.BrokerPID}
	if cfg.BrokerPID > 0 {
		if res.RSSBefore, err = readRSS(cfg.BrokerPID); err != nil {
			return nil, nil, err
		}
	}
	conns := make([]net.Conn, cfg.Idle)
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range cfg.Idle {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := connectIdle(u.Host, fmt.Sprintf("%s-idle%d", cfg.Prefix, i), cfg.User, cfg.Password, cfg.Timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns[i] = c
			res.Connections++
		}()
	}
	wg.Wait()
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	if res.Connections == 0 && firstErr != nil {
		closeAll()
		return nil, nil, fmt.Errorf("idle connections: %w", firstErr)
	}
	if cfg.BrokerPID > 0 {
		if res.RSSAfter, err = readRSS(cfg.BrokerPID); err != nil {
			closeAll()
			return nil, nil, err
		}
		if res.Connections > 0 {
			res.PerConn = float64(res.RSSAfter-res.RSSBefore) / float64(res.Connections)
		}
	}
	return res, closeAll, nil
}

// connectIdle sends an MQTT 3.1.1 CONNECT (clean session, keep-alive 0),
// reads the CONNACK, and subscribes to <id>/rpc at QoS 1.
func connectIdle(addr, id, user, password string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	body := append(appendString(nil, "MQTT"), 4)
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80 | 0x40
	}
	body = append(body, flags, 0, 0) // keep-alive 0: no deadline
	body = appendString(body, id)
	if user != "" {
		body = appendString(body, user)
		body = appendString(body, password)
	}
	pkt := packet(0x10, body) // CONNECT (attack.go)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("connack % x: refused", ack)
	}
	// Subscribed to its reply topic, as a device that makes calls is.
	if _, err := c.Write(subscribe(4, id+"/rpc")); err != nil {
		c.Close()
		return nil, err
	}
	var suback [5]byte
	if _, err := io.ReadFull(c, suback[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("suback: %w", err)
	}
	if suback[0] != 0x90 || suback[4] >= 0x80 {
		c.Close()
		return nil, fmt.Errorf("suback % x: refused", suback)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// readRSS reads VmRSS of pid from /proc, in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read RSS: %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("read RSS: no VmRSS line")
}

// cpuTime is the user plus system CPU time pid has used, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, the Linux USER_HZ).
func cpuTime(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces; fields count from its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("read CPU time: no ')' in stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("read CPU time: short stat")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read CPU time: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
