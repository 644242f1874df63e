// Package images gets a task's image onto its node before the engine starts it: pulled from its registry, or fetched from another node and verified by digest; it serves this node's images to others, prunes what no task uses, and pins a service's image to a digest on the manager.
package images
