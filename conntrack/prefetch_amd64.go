package conntrack

// prefetch asks the CPU to start loading the cache lines at addrs[0:n]
// without waiting for them (PREFETCHT0). Unlike a load, a prefetch retires at
// once: a burst's misses then overlap as far as the memory system allows,
// instead of as far as the reorder buffer, which fills with the work of a
// few keys behind the first load that misses. The addresses are never
// dereferenced by Go code here; a bad one is harmless.
//
//go:noescape
func prefetch(addrs *uintptr, n int)
