package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/swarmlet/swarmlet/node/engine"
)

// followInterval is how often a followed log file is checked for new output.
const followInterval = 100 * time.Millisecond

// Logs implements engine.Engine. Tail > 0 starts at the last Tail lines, Since at
// the first line written at or after it, else at the beginning. With Follow it
// keeps copying until ctx ends or, as `docker logs -f` does, until the process has
// exited and its output is drained. Line times come from the log's marks
// (stamps.go).
func (e *Engine) Logs(ctx context.Context, taskID string, opt engine.LogOptions, w io.Writer) error {
	e.mu.Lock()
	tk := e.tasks[taskID]
	e.mu.Unlock()
	f, err := os.Open(e.logPath(taskID))
	if err != nil {
		if isNotExist(err) && tk == nil {
			return fmt.Errorf("logs of task %s: no such task", taskID)
		}
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	defer f.Close()
	stamped := opt.Timestamps || !opt.Since.IsZero()
	var marks []mark
	if stamped {
		e.markLog(taskID)
		marks = e.readMarks(taskID)
	}
	var start int64
	if opt.Tail > 0 {
		if start, err = tailOffset(f, opt.Tail); err != nil {
			return fmt.Errorf("logs of task %s: %w", taskID, err)
		}
	}
	if !opt.Since.IsZero() {
		start = max(start, offsetSince(marks, opt.Since))
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	var out io.Writer = w
	var lw *stampWriter
	if opt.Timestamps {
		lw = &stampWriter{w: w, off: start, marks: marks}
		out = lw
	}
	copyNew := func() error {
		if lw != nil {
			e.markLog(taskID)
			lw.marks = e.moreMarks(taskID, lw.marks)
		}
		_, err := io.Copy(out, f)
		return err
	}
	if _, err := io.Copy(out, f); err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	if !opt.Follow || tk == nil {
		return lw.flush()
	}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		var exited bool
		select {
		case <-ctx.Done():
			return lw.flush()
		case <-tk.done:
			exited = true
		case <-t.C:
		}
		if err := copyNew(); err != nil {
			return fmt.Errorf("logs of task %s: %w", taskID, err)
		}
		if exited {
			return lw.flush()
		}
	}
}

// stampWriter writes whole lines, each after the time of its write. A partial
// last line waits for its end (or flush).
type stampWriter struct {
	w     io.Writer
	off   int64 // log offset of the first byte of buf
	buf   []byte
	marks []mark
}

func (s *stampWriter) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := s.line(s.buf[:i+1]); err != nil {
			return 0, err
		}
		s.buf = s.buf[i+1:]
	}
}

func (s *stampWriter) line(l []byte) error {
	s.off += int64(len(l))
	ts := stampAt(s.marks, s.off).UTC().Format(engine.TimestampFormat)
	_, err := io.WriteString(s.w, ts+" "+string(l))
	return err
}

func (s *stampWriter) flush() error {
	if s == nil || len(s.buf) == 0 {
		return nil
	}
	err := s.line(append(s.buf, '\n'))
	s.buf = nil
	return err
}

// tailOffset finds where the last n lines of f begin, reading backwards in blocks
// so that a large log is not read whole. A final newline does not start a line.
func tailOffset(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	const block = 32 << 10
	buf := make([]byte, block)
	pos, seen, first := end, 0, true
	for pos > 0 {
		size := int64(block)
		if pos < size {
			size = pos
		}
		pos -= size
		chunk := buf[:size]
		if _, err := f.ReadAt(chunk, pos); err != nil && err != io.EOF {
			return 0, err
		}
		if first {
			first = false
			if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
				chunk = chunk[:len(chunk)-1]
			}
		}
		for i := len(chunk) - 1; i >= 0; {
			j := bytes.LastIndexByte(chunk[:i+1], '\n')
			if j < 0 {
				break
			}
			seen++
			if seen == n {
				return pos + int64(j) + 1, nil
			}
			i = j - 1
		}
	}
	return 0, nil
}
