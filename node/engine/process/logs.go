package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// followInterval is how often a followed log file is checked for new output.
const followInterval = 100 * time.Millisecond

// Logs implements engine.Engine. tail > 0 starts at the last tail lines, else at the
// beginning. With follow it keeps copying until ctx ends or, as `docker logs -f`
// does, until the process has exited and its output is drained.
func (e *Engine) Logs(ctx context.Context, taskID string, follow bool, tail int, w io.Writer) error {
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
	if tail > 0 {
		off, err := tailOffset(f, tail)
		if err != nil {
			return fmt.Errorf("logs of task %s: %w", taskID, err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("logs of task %s: %w", taskID, err)
		}
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	if !follow || tk == nil {
		return nil
	}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		var exited bool
		select {
		case <-ctx.Done():
			return nil
		case <-tk.done:
			exited = true
		case <-t.C:
		}
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("logs of task %s: %w", taskID, err)
		}
		if exited {
			return nil
		}
	}
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
