// Package docker runs tasks as Docker containers through the Docker Engine API, labelled so that several nodes can share one engine.
package docker
