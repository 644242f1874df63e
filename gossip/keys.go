package gossip

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrNotEncrypted: SetKeys on a member started without keys (memberlist cannot
// turn encryption on in a running member).
var ErrNotEncrypted = errors.New("gossip: this member was started without encryption")

// SetKeys makes the keyring keys, the first one primary. It takes effect at once,
// for messages in both directions. To rotate without a split, a caller installs the
// new key as a secondary everywhere first, then makes it primary, then drops the
// old one: during each step every member can open what every other one sends.
func (g *Gossip) SetKeys(keys [][]byte) error {
	if g.keyring == nil {
		return ErrNotEncrypted
	}
	if len(keys) == 0 {
		return errors.New("gossip: empty keyring")
	}
	for _, k := range keys {
		if err := g.keyring.AddKey(k); err != nil {
			return fmt.Errorf("gossip: add key: %w", err)
		}
	}
	if err := g.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	for _, old := range g.keyring.GetKeys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, old)
		}
		if !keep {
			if err := g.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("gossip: remove key: %w", err)
			}
		}
	}
	return nil
}

// Keys is the keyring, primary first (nil when unencrypted).
func (g *Gossip) Keys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	return g.keyring.GetKeys()
}
