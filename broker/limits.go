package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
)

// limitCapabilities sets the mochi options behind the limits of cfg.
func limitCapabilities(caps *mqtt.Capabilities, cfg Config) {
	ackCapabilities(caps)
}

// addLimitHooks adds the hooks that enforce the limits of b.cfg and make
// mochi's acknowledgements valid; Start calls it.
func (b *Broker) addLimitHooks() error {
	for _, h := range []mqtt.Hook{new(validAcks)} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return err
		}
	}
	return nil
}
