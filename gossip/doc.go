// Package gossip wraps hashicorp/memberlist: node metadata, join/leave/fail events, LAN-tuned failure detection.
package gossip
