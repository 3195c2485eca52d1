//go:build !cgo

package main

// cgoMarker does nothing in a pure-Go build; see cgo.go.
func cgoMarker() {}

// cgoBlockingRead needs cgo; see cgo.go.
func cgoBlockingRead() {
	panic("goleaks: the cgoread pattern needs a cgo build (CGO_ENABLED=1)")
}
