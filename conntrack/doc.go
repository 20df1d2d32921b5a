// Package conntrack tracks connections the way Linux netfilter does, so that
// every packet gets the state iptables' "-m state" / "-m conntrack --ctstate"
// would give it: NEW, ESTABLISHED, RELATED or INVALID.
//
// A Tracker is owned by one worker (lcore) and is not safe for concurrent
// use. Its Table is a bucketized cuckoo hash with both directions of every
// connection as keys, so one lookup yields the entry and the direction. The
// table, its entries and its free list are fixed-size arrays allocated at
// start-up; entries hold no Go pointers (the GC never scans them) and refer
// to each other by index. Time is injected: every call takes "now" in
// nanoseconds from the caller's clock (the worker's TSC clock in production,
// a manual clock in tests); there is no time.Now in this package.
package conntrack
