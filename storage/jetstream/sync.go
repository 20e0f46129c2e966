package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// SyncReport is what CheckSync learned of the servers' sync setting.
type SyncReport struct {
	Servers  int      // servers that answered; 0: the connection may not ask
	Unsynced []string // names of those that do not sync every write
}

// CheckSync asks every NATS server of nc's cluster for its JetStream
// configuration (a $SYS server ping, which only a system account user may
// send) and reports those without sync_interval: always, which acknowledge
// writes before they are on disk. It waits up to wait for the answers.
// A connection of an ordinary account gets none: Servers is 0.
func CheckSync(ctx context.Context, nc *nats.Conn, wait time.Duration) (SyncReport, error) {
	var rep SyncReport
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return rep, fmt.Errorf("check sync: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox, nil); err != nil {
		return rep, fmt.Errorf("check sync: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return rep, nil // the wait is over
		}
		if m.Header.Get("Status") != "" {
			return rep, nil // no responders: not allowed, or no system account
		}
		var resp struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
			Data struct {
				JetStream struct {
					Config *struct {
						SyncAlways bool `json:"sync_always"`
					} `json:"config"`
				} `json:"jetstream"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &resp) != nil {
			continue
		}
		rep.Servers++
		if c := resp.Data.JetStream.Config; c != nil && !c.SyncAlways {
			rep.Unsynced = append(rep.Unsynced, resp.Server.Name)
		}
	}
}
