package daemon

import (
	"time"
)

// A node that starts asks its peer for everything (RESYNC) and reports
// ready (ready file, /api/readyz, systemd) only once the answer is in:
// conntrackd's protocol has no end-of-dump marker, so the dump counts as
// in once the peer has answered (any message since the request: an empty
// table is answered by heartbeats alone) and the external cache has
// stopped growing for readySettle. sync.ready_timeout bounds the wait: a
// node whose peer is down (the first of a pair to start) reports ready
// when it runs out, and says why.

// readySettle is how long the external cache must not grow.
const readySettle = 500 * time.Millisecond

// readyEvery is how often the cache's growth is sampled.
const readyEvery = 100 * time.Millisecond

// readiness follows the start-up resync (the sync goroutine's).
type readiness struct {
	asked    time.Time // when the resync was asked for
	sampled  time.Time // the last sample of the cache's size
	size     int       // the cache's size then
	grewAt   time.Time // the last sample that found it grown
	answered bool
}

// grown is whether the cache grew from before to now by more than the
// events of an idle peer would add: 1/256 of it, and at least 16.
func grown(before, now int) bool { return now-before > max(16, before/256) }

// check samples the cache and reports whether the resync is in, and why
// ("" while it is not).
func (r *readiness) check(now, peerSeen time.Time, size int, timeout time.Duration) string {
	if !r.answered && peerSeen.After(r.asked) {
		r.answered, r.grewAt = true, now
	}
	if now.Sub(r.sampled) >= readyEvery {
		if grown(r.size, size) {
			r.grewAt = now
		}
		r.size, r.sampled = size, now
	}
	switch {
	case r.answered && now.Sub(r.grewAt) >= readySettle:
		return "the peer's resync is in"
	case now.Sub(r.asked) >= timeout:
		if !r.answered {
			return "no answer from the peer within sync.ready_timeout: ready without its connections"
		}
		return "the peer's resync still grows at sync.ready_timeout: ready with what came"
	}
	return ""
}

// SyncReady is closed once the sync's start-up resync is in, or was not
// waited for (sync off, sync.ready_timeout 0).
func (d *Daemon) SyncReady() <-chan struct{} { return d.syncReady }

// syncReadyCheck closes SyncReady when the resync is in.
func (d *Daemon) syncReadyCheck(st *syncState, r *readiness) {
	if st.ready.Load() {
		return
	}
	why := r.check(time.Now(), st.node.PeerSeen(), st.node.External.Len(), d.Config.Sync.ReadyTimeout)
	if why == "" {
		return
	}
	st.ready.Store(true)
	close(d.syncReady)
	d.log.Info("sync: ready", "why", why, "peer_connections", st.node.External.Len(), "waited", time.Since(r.asked).Round(time.Millisecond))
}
