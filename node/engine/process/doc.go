// Package process runs tasks as plain child processes that outlive the worker daemon and are adopted again when it restarts.
package process
