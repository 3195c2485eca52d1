//go:build !cgo

package main

// cgoMarker does nothing in a pure-Go build; see cgo.go.
func cgoMarker() {}
