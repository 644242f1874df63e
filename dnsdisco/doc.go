// Package dnsdisco is the per-node DNS server answering service names from a record table and forwarding the rest upstream.
package dnsdisco
