package process

import (
	"context"
	"sync"
)

// subscriber is one Changes channel. Its queue is unbounded but holds each task ID
// at most once, so a slow reader neither blocks the engine nor loses a change.
type subscriber struct {
	mu      sync.Mutex
	pending []string
	queued  map[string]bool
	wake    chan struct{} // capacity 1: "the queue is not empty"
}

func (s *subscriber) push(id string) {
	s.mu.Lock()
	if !s.queued[id] {
		s.queued[id] = true
		s.pending = append(s.pending, id)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) pop() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return "", false
	}
	id := s.pending[0]
	s.pending = s.pending[1:]
	delete(s.queued, id)
	return id, true
}

func (e *Engine) notify(taskID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		s.push(taskID)
	}
}

// Changes implements engine.Engine: it delivers the ID of every task whose process
// exits. The channel closes when ctx ends or the engine is closed.
func (e *Engine) Changes(ctx context.Context) <-chan string {
	out := make(chan string)
	s := &subscriber{queued: map[string]bool{}, wake: make(chan struct{}, 1)}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			e.mu.Lock()
			delete(e.subs, s)
			e.mu.Unlock()
		}()
		for {
			id, ok := s.pop()
			if !ok {
				select {
				case <-s.wake:
					continue
				case <-ctx.Done():
					return
				case <-e.stop:
					return
				}
			}
			select {
			case out <- id:
			case <-ctx.Done():
				return
			case <-e.stop:
				return
			}
		}
	}()
	return out
}
