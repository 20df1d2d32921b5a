package hasync

import (
	"slices"
	"sync"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/hasync/wire"
)

// Cache is the external cache: the peer's connections as its last message
// about each described them, until it destroys them (conntrackd's model:
// entries do not expire here, the peer says when they end; a takeover
// installs them with the timeouts they last had). It is bounded.
type Cache struct {
	mu  sync.Mutex
	m   map[conntrack.Tuple]Synced
	max int
}

// Synced is one of the peer's connections: the entry, and when the last
// message about it arrived (First: the first).
type Synced struct {
	Entry       conntrack.Entry
	First, Last time.Time
}

// NewCache returns a cache of at most max connections.
func NewCache(max int) *Cache { return &Cache{m: map[conntrack.Tuple]Synced{}, max: max} }

var errFull = refusal("cache_full", "the external cache is full (sync.max_entries)")

// apply takes one message's connection: NEW and UPDATE add or replace it,
// DELETE removes it.
func (c *Cache) apply(t wire.Type, e *conntrack.Entry, at time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == wire.CTDelete {
		delete(c.m, e.Orig)
		return nil
	}
	old, ok := c.m[e.Orig]
	if !ok && len(c.m) >= c.max {
		return errFull
	}
	if !ok {
		old.First = at
	}
	c.m[e.Orig] = Synced{Entry: *e, First: old.First, Last: at}
	return nil
}

// Len is how many connections the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// List returns the cached connections, oldest first (then by tuple), each
// with the timeout its last message gave (as conntrackd's external cache
// keeps it, and a takeover installs it).
func (c *Cache) List() []Synced {
	c.mu.Lock()
	out := make([]Synced, 0, len(c.m))
	for _, s := range c.m {
		out = append(out, s)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Synced) int {
		if c := a.First.Compare(b.First); c != 0 {
			return c
		}
		return slices.Compare(a.Entry.Orig.AppendText(nil), b.Entry.Orig.AppendText(nil))
	})
	return out
}
