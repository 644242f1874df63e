// Package bench holds the scale benchmark (scale_test.go: real managers, hollow
// nodes from bench/hollow) and its committed results (SCALE.md).
package bench
