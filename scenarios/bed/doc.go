// Package bed brings up K hosts on one machine, each a network namespace on a private bridge with its own dockerd, and removes every trace of them again.
package bed
