package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/hasync"
	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/dpfw/dpfw/dataplane"
)

// HA roles (sync.role): an active node forwards, a backup forwards
// nothing (the workers drop every frame, reason standby) and keeps the
// peer's connections in its external cache until it is promoted, by dpfw
// ha promote or when the peer has been silent for sync.failover_after;
// promotion installs the cache into the workers' tables (conntrackd -c)
// before the first frame is forwarded. Active-active nodes both forward
// and install the peer's connections as they arrive (conntrackd's
// CacheWriteThrough), so that a connection whose packets cross both
// nodes is ESTABLISHED on each.

// roles holds the role and what changes it.
type roles struct {
	mu   sync.Mutex // serializes promotions and demotions
	role atomic.Pointer[string]
	// promoting is set while a promotion installs the cache.
	promoting  atomic.Bool
	promotions atomic.Uint64
	// installed and installFailed count the peer's connections put in
	// (or refused by) the tables; installLost those active-active had
	// no room to queue.
	installed, installFailed, installLost atomic.Uint64
	// queue carries active-active's connections to the installer; kick
	// wakes it for the peer's expectations.
	queue chan conntrack.Entry
	kick  chan struct{}
}

// installQueue bounds active-active's connections waiting to be installed.
const installQueue = 65536

func (r *roles) get() string { return *r.role.Load() }

func (r *roles) set(role string) { r.role.Store(&role) }

// initRoles sets the starting role, and the standby switch with it.
func (d *Daemon) initRoles(st *syncState) {
	role := d.Config.Sync.Role
	st.roles.set(role)
	d.standby.Store(role == "backup")
	if role == "active-active" {
		st.roles.queue, st.roles.kick = make(chan conntrack.Entry, installQueue), make(chan struct{}, 1)
		go d.runInstaller(st)
	}
}

// onPeerConn is the node's OnConn: active-active installs the peer's new
// and updated connections.
func (st *syncState) onPeerConn(t wire.Type, e *conntrack.Entry) {
	if st.roles.queue == nil || t == wire.CTDelete {
		return
	}
	select {
	case st.roles.queue <- *e:
	default:
		st.roles.installLost.Add(1)
	}
}

// onPeerExpect is the node's OnExpect: active-active installs the
// peer's expectations too.
func (st *syncState) onPeerExpect(t wire.Type, x *conntrack.Expectation) {
	if st.roles.kick == nil || t == wire.ExpDelete {
		return
	}
	select {
	case st.roles.kick <- struct{}{}:
	default:
	}
}

// runInstaller installs active-active's queued connections, a batch at a
// time, and the peer's expectations with each, until dpfw stops.
func (d *Daemon) runInstaller(st *syncState) {
	var batch []conntrack.Entry
	for {
		batch = batch[:0]
		select {
		case <-d.quit:
			return
		case e := <-st.roles.queue:
			batch = append(batch, e)
		case <-st.roles.kick:
		}
		for more := true; more && len(batch) < listChunk; {
			select {
			case e := <-st.roles.queue:
				batch = append(batch, e)
			default:
				more = false
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.listTimeout())
		n, failed, err := d.install(ctx, batch, st.node.Expects.List(time.Now()))
		cancel()
		st.roles.installed.Add(uint64(n))
		st.roles.installFailed.Add(uint64(failed))
		if err != nil {
			d.log.Warn("sync: installing the peer's connections", "err", err)
		}
	}
}

// install puts connections, then expectations, into the tables of the
// workers that own them (every worker when the owner is the NIC's
// choice), and says how many went in and how many were refused.
func (d *Daemon) install(ctx context.Context, es []conntrack.Entry, xs []conntrack.Expectation) (n, failed int, err error) {
	if len(d.pipes) == 0 {
		return 0, 0, nil
	}
	per := make([][]conntrack.Entry, len(d.pipes))
	perX := make([][]conntrack.Expectation, len(d.pipes))
	owners := func(t *conntrack.Tuple, add func(w int)) {
		if o := d.pipes[0].Owner(t); o >= 0 {
			add(o)
			return
		}
		for w := range d.pipes {
			add(w)
		}
	}
	for i := range es {
		owners(&es[i].Orig, func(w int) { per[w] = append(per[w], es[i]) })
	}
	for i := range xs {
		owners(&xs[i].Master, func(w int) { perX[w] = append(perX[w], xs[i]) })
	}
	for w, pl := range d.pipes {
		if len(per[w]) == 0 && len(perX[w]) == 0 {
			continue
		}
		req := dataplane.NewInjectRequest(per[w], perX[w])
		if err := post(ctx, pl, req); err != nil {
			return n, failed, fmt.Errorf("worker %d: %w", w, err)
		}
		n, failed = n+req.Injected, failed+req.InjectFailed
	}
	return n, failed, nil
}

// post hands req to a worker and waits until it is served.
func post(ctx context.Context, pl *dataplane.Pipeline, req *dataplane.Request) error {
	for !pl.Post(req) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-req.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("did not answer: %w", ctx.Err())
	}
}

// Promotion is what a promotion did.
type Promotion struct {
	Role      string `json:"role"`
	Installed int    `json:"installed"`
	Failed    int    `json:"failed"`
	Took      string `json:"took"`
}

var (
	errNotBackup = errors.New("this node is not a backup (dpfw ha status)")
	errPromoting = errors.New("a promotion is under way")
)

// Promote makes a backup active: the external cache goes into the tables,
// then the workers forward.
func (d *Daemon) Promote(why string) (Promotion, error) {
	st := d.sync
	if st == nil {
		return Promotion{}, errSyncOff
	}
	st.roles.mu.Lock()
	defer st.roles.mu.Unlock()
	if st.roles.get() != "backup" {
		return Promotion{Role: st.roles.get()}, errNotBackup
	}
	if !st.roles.promoting.CompareAndSwap(false, true) {
		return Promotion{Role: "backup"}, errPromoting
	}
	defer st.roles.promoting.Store(false)
	start := time.Now()
	var es []conntrack.Entry
	for _, s := range st.node.External.List() {
		es = append(es, s.Entry)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.listTimeout())
	defer cancel()
	n, failed, err := d.install(ctx, es, st.node.Expects.List(time.Now()))
	st.roles.installed.Add(uint64(n))
	st.roles.installFailed.Add(uint64(failed))
	if err != nil {
		return Promotion{Role: "backup"}, fmt.Errorf("installing the external cache: %w (still a backup)", err)
	}
	st.roles.set("active")
	d.standby.Store(false)
	st.roles.promotions.Add(1)
	p := Promotion{Role: "active", Installed: n, Failed: failed, Took: time.Since(start).Round(time.Millisecond).String()}
	d.log.Warn("sync: promoted to active: forwarding", "why", why, "installed", n, "refused", failed, "took", p.Took)
	return p, nil
}

// Demote makes an active node a backup: it stops forwarding at once and
// keeps its tables.
func (d *Daemon) Demote() error {
	st := d.sync
	if st == nil {
		return errSyncOff
	}
	st.roles.mu.Lock()
	defer st.roles.mu.Unlock()
	if st.roles.get() != "active" {
		return fmt.Errorf("this node is %s: only an active node can be demoted", st.roles.get())
	}
	d.standby.Store(true)
	st.roles.set("backup")
	d.log.Warn("sync: demoted to backup: forwarding nothing")
	return nil
}

// watchPeer promotes a backup whose peer has been silent for
// sync.failover_after (counted from start when the peer never spoke).
func (d *Daemon) watchPeer(st *syncState, n *hasync.Node) {
	after := d.Config.Sync.FailoverAfter
	if after == 0 || st.roles.get() != "backup" || st.roles.promoting.Load() {
		return
	}
	last := n.PeerSeen()
	if last.Before(st.started) {
		last = st.started
	}
	if silent := time.Since(last); silent >= after {
		go func() {
			_, err := d.Promote(fmt.Sprintf("no message from the peer for %s (sync.failover_after %s)", silent.Round(time.Millisecond), after))
			if err != nil && !errors.Is(err, errNotBackup) && !errors.Is(err, errPromoting) {
				d.log.Error("sync: promotion failed", "err", err)
			}
		}()
	}
}
