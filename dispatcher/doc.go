// Package dispatcher holds the leader's control loops: orchestrator, scheduler and dispatcher, talking only through the store.
package dispatcher
