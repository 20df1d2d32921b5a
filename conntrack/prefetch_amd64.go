package conntrack

// prefetch asks the CPU to start loading the cache lines at addrs[0:n]
// without waiting for them (PREFETCHT0). Unlike a load, a prefetch does not
// hold back the instructions after it until its line arrives, only until
// the memory system has room for one more miss (see "Prefetching" in
// table.go). The addresses are never dereferenced by Go code here; a bad
// one is harmless.
//
//go:noescape
func prefetch(addrs *uintptr, n int)
