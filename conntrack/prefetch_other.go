//go:build !amd64

package conntrack

// prefetch is a no-op where no assembly version exists: the lookups then
// wait for each miss in turn.
func prefetch(addrs *uintptr, n int) {}
