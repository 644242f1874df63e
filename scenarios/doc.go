// Package scenarios holds Jepsen-style tests: real clusters, injected faults, recorded and checked histories.
package scenarios
