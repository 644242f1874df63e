package process

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A task writes its output straight into its log file (so it never blocks on the
// daemon, nor dies with it), which leaves no place to stamp each line with the
// time it was written. Instead the engine keeps, per task, a file of marks: "the
// log was S bytes long at time T", T being the file's modification time when the
// engine saw it grow. inotify tells the engine of each write at once, so a line's
// time is that of the first mark at or past its end: the time of its write, or of
// a later write within the same few milliseconds. Output written while no daemon
// ran gets the time of the last write before the daemon came back.

// markSize is one mark on disk: the log's size, then the time in Unix nanoseconds.
const markSize = 16

type mark struct {
	size int64
	at   time.Time
}

// coalesce bounds how often one busy task's log is marked.
const coalesce = 10 * time.Millisecond

func (e *Engine) stampPath(taskID string) string {
	return filepath.Join(e.dir, taskID+".ts")
}

// markLog records the log's current size and modification time if it grew since
// the last mark.
func (e *Engine) markLog(taskID string) {
	e.stampMu.Lock()
	defer e.stampMu.Unlock()
	st, err := os.Stat(e.logPath(taskID))
	if err != nil {
		return
	}
	last, ok := e.marked[taskID]
	if !ok {
		last = lastMarkSize(e.stampPath(taskID))
	}
	if st.Size() <= last {
		e.marked[taskID] = last
		return
	}
	var b [markSize]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(st.Size()))
	binary.LittleEndian.PutUint64(b[8:], uint64(st.ModTime().UnixNano()))
	f, err := os.OpenFile(e.stampPath(taskID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	_, err = f.Write(b[:])
	f.Close()
	if err == nil {
		e.marked[taskID] = st.Size()
	}
}

func (e *Engine) forgetMarks(taskID string) {
	e.stampMu.Lock()
	delete(e.marked, taskID)
	e.stampMu.Unlock()
}

func lastMarkSize(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < markSize {
		return 0
	}
	var b [markSize]byte
	if _, err := f.ReadAt(b[:], st.Size()/markSize*markSize-markSize); err != nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(b[:8]))
}

// readMarks loads a task's marks, in order of size.
func (e *Engine) readMarks(taskID string) []mark { return e.moreMarks(taskID, nil) }

// moreMarks appends to have the marks written after them (a follower reads only
// what is new, not the whole file at every look).
func (e *Engine) moreMarks(taskID string, have []mark) []mark {
	f, err := os.Open(e.stampPath(taskID))
	if err != nil {
		return have
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, int64(len(have))*markSize, 1<<62))
	if err != nil {
		return have
	}
	for i := 0; i+markSize <= len(b); i += markSize {
		have = append(have, mark{size: int64(binary.LittleEndian.Uint64(b[i : i+8])),
			at: time.Unix(0, int64(binary.LittleEndian.Uint64(b[i+8:i+16])))})
	}
	return have
}

// stampAt is the time of the bytes ending at offset end: that of the first mark
// at or past it (now, if none is yet).
func stampAt(marks []mark, end int64) time.Time {
	i := sort.Search(len(marks), func(i int) bool { return marks[i].size >= end })
	if i == len(marks) {
		return time.Now()
	}
	return marks[i].at
}

// offsetSince is where the first byte written at or after t begins: the size at
// the last mark before t.
func offsetSince(marks []mark, t time.Time) int64 {
	var off int64
	for _, m := range marks {
		if !m.at.Before(t) {
			break
		}
		off = m.size
	}
	return off
}

// watchLogs marks each log as it grows, woken by inotify on the tasks directory.
// Without inotify, logs are marked when they are read (times are then those of
// the last write before the read).
func (e *Engine) watchLogs() {
	defer e.wg.Done()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		e.log.Warn("inotify unavailable: log timestamps are those of the read", "err", err)
		return
	}
	if _, err := unix.InotifyAddWatch(fd, e.dir, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		e.log.Warn("inotify unavailable: log timestamps are those of the read", "err", err)
		return
	}
	// A non-blocking descriptor in an os.File goes through Go's poller, so Close
	// (when the engine closes) ends the blocked Read.
	f := os.NewFile(uintptr(fd), "inotify")
	go func() { <-e.stop; f.Close() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				e.log.Warn("inotify read", "err", err)
			}
			return
		}
		dirty := map[string]bool{}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len (uint32 each), then the name.
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12 : off+16]))
			if off+unix.SizeofInotifyEvent+nameLen > n {
				break
			}
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen]), "\x00")
			off += unix.SizeofInotifyEvent + nameLen
			if id, ok := strings.CutSuffix(name, ".log"); ok {
				dirty[id] = true
			}
		}
		for id := range dirty {
			e.markLog(id)
		}
		select {
		case <-e.stop:
			return
		case <-time.After(coalesce):
		}
	}
}
