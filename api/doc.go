// Package api holds the object model every part of swarmlet shares and the wire types of its HTTP API.
package api
