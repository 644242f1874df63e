// Package stack turns compose files into the service specs of a stack and plans a deploy: what to create, update and remove.
package stack
