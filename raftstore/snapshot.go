package raftstore

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// Snapshot record kinds: the snapshot is a stream of typed records, one per line,
// so a table added later is a new kind and old snapshots still restore.
const (
	recCluster = "cluster"
	recNode    = "node"
	recService = "service"
	recTask    = "task"
	recIndex   = "index"
	recAuth    = "registry-auth"
	recEvent   = "event"
	recSecret  = "secret"
)

type record struct {
	Kind string          `json:"k"`
	Val  json.RawMessage `json:"v"`
}

// WriteTo streams the snapshot's content as typed records.
func (v *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	put := func(kind string, val any) error {
		b, err := json.Marshal(val)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", kind, err)
		}
		// A record as json.Encoder would write it ({"k":KIND,"v":VAL}), without
		// its second pass over VAL: Marshal's output is already compact.
		bw.WriteString(`{"k":"`)
		bw.WriteString(kind)
		bw.WriteString(`","v":`)
		bw.Write(b)
		_, err = bw.WriteString("}\n")
		return err
	}
	if err := put(recIndex, v.index); err != nil {
		return 0, err
	}
	if c := v.Cluster(); c != nil {
		if err := put(recCluster, c); err != nil {
			return 0, err
		}
	}
	for _, n := range v.Nodes() {
		if err := put(recNode, n); err != nil {
			return 0, err
		}
	}
	for _, s := range v.Services() {
		if err := put(recService, s); err != nil {
			return 0, err
		}
	}
	for _, t := range v.Tasks() {
		if err := put(recTask, t); err != nil {
			return 0, err
		}
	}
	for _, a := range v.registryAuths() {
		if err := put(recAuth, a); err != nil {
			return 0, err
		}
	}
	for _, r := range v.secretRows() {
		if err := put(recSecret, r); err != nil {
			return 0, err
		}
	}
	events, _ := v.Events(0, 0)
	for _, e := range events {
		if err := put(recEvent, e); err != nil {
			return 0, err
		}
	}
	err := bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with a snapshot's content. It builds a fresh
// database and swaps it in, so readers never see a half-restored state.
func (s *State) Restore(r io.Reader) error {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	txn := db.Txn(true)
	defer txn.Abort()
	dec := json.NewDecoder(bufio.NewReader(r))
	var index uint64
	for {
		var rec record
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("restore: decode record: %w", err)
		}
		switch rec.Kind {
		case recIndex:
			err = json.Unmarshal(rec.Val, &index)
		case recCluster:
			var c Cluster
			if err = json.Unmarshal(rec.Val, &c); err == nil {
				putCluster(txn, &c)
			}
		case recNode:
			var n api.Node
			if err = json.Unmarshal(rec.Val, &n); err == nil {
				mustInsert(txn, tableNodes, &n)
			}
		case recService:
			var sv api.Service
			if err = json.Unmarshal(rec.Val, &sv); err == nil {
				putService(txn, &sv)
			}
		case recTask:
			var t api.Task
			if err = json.Unmarshal(rec.Val, &t); err == nil {
				mustInsert(txn, tableTasks, &t)
			}
		case recAuth:
			var a registryAuthRow
			if err = json.Unmarshal(rec.Val, &a); err == nil {
				mustInsert(txn, tableRegistryAuth, &a)
			}
		case recSecret:
			var sr secretRow
			if err = json.Unmarshal(rec.Val, &sr); err == nil {
				mustInsert(txn, tableSecrets, &sr)
			}
		case recEvent:
			var e api.Event
			if err = json.Unmarshal(rec.Val, &e); err == nil {
				mustInsert(txn, tableEvents, &e)
			}
		default:
			// A newer version's record kind: skipping it beats refusing to start.
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", rec.Kind, err)
		}
	}
	txn.Commit()
	s.mu.Lock()
	s.db = db
	s.index = index
	s.feed.reset(index)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return nil
}
