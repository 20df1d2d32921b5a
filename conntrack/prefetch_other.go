//go:build !amd64

package conntrack

// prefetch is a no-op where no assembly version exists: PrefetchBurst's loads
// still warm the cache, with less overlap.
func prefetch(addrs *uintptr, n int) {}
