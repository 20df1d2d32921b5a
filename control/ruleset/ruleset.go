// Package ruleset builds dpfw's compiled filter and conntrack settings from
// a validated config. It never touches DPDK, so "dpfw check" uses it too.
package ruleset

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/hasync"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
)

// Parse parses the config's rule set: iptables syntax (rules.file or
// rules.iptables) or the structured form. A rule set with nothing in it
// (no rule set at all, an empty or comment-only file) is refused unless
// rules.allow_empty is set: it would accept everything, and a file that is
// being written or was truncated must never open the firewall.
func Parse(cfg *config.Config) (*rules.Ruleset, error) {
	return ParseContext(context.Background(), cfg)
}

// ParseContext is Parse, abandoned (with ctx's cause) when ctx is done.
func ParseContext(ctx context.Context, cfg *config.Config) (*rules.Ruleset, error) {
	setMap, err := sets(cfg)
	if err != nil {
		return nil, err
	}
	name, text := cfg.RulesText()
	if name6, text6 := cfg.RulesText6(); name6 != "" {
		return parseFamilies(ctx, cfg, setMap, name, text, name6, text6)
	}
	if name != "" {
		if rules.IsEmptyText(text) {
			return emptyRuleset(cfg, name)
		}
		return rules.Parse(name, text, rules.ParseOptions{Sets: setMap, Context: ctx})
	}
	if len(cfg.Rules.List) == 0 && len(cfg.Rules.Chains) == 0 && cfg.Rules.Policies == (config.Policies{}) {
		return emptyRuleset(cfg, "")
	}
	return structured(cfg, setMap)
}

// parseFamilies parses an iptables rule set and an ip6tables one and
// merges them: each family keeps its own chains and policies.
func parseFamilies(ctx context.Context, cfg *config.Config, setMap map[string][]netip.Prefix, name, text, name6, text6 string) (*rules.Ruleset, error) {
	var rs [2]*rules.Ruleset
	for i, src := range [2][2]string{{name, text}, {name6, text6}} {
		var err error
		if rules.IsEmptyText(src[1]) {
			rs[i], err = emptyRuleset(cfg, src[0])
		} else {
			rs[i], err = rules.Parse(src[0], src[1], rules.ParseOptions{Family: rules.Family(4 + 2*i), Sets: setMap, Context: ctx})
		}
		if err != nil {
			return nil, err
		}
	}
	return rules.MergeFamilies(rs[0], rs[1]), nil
}

// emptyRuleset is the accept-everything rule set, when the config asks
// for it.
func emptyRuleset(cfg *config.Config, name string) (*rules.Ruleset, error) {
	if cfg.Rules.AllowEmpty {
		return rules.NewRuleset(), nil
	}
	where := cfg.Name + ": rules"
	if line := config.LineOf(cfg.Lines, "rules"); line > 0 {
		where = fmt.Sprintf("%s:%d: rules", cfg.Name, line)
	}
	switch {
	case name == "":
		return nil, fmt.Errorf("%s: no rule set: give rules.file, rules.iptables or the structured form (rules.policies, rules.list); an empty rule set accepts every packet, so to forward everything on purpose set rules.allow_empty: true", where)
	case name == "rules.iptables" || name == "rules.iptables6":
		return nil, fmt.Errorf("%s.%s: has no rules or policies (only blank lines and comments), which would accept every packet; write the rules, or set rules.allow_empty: true if that is intended", where, strings.TrimPrefix(name, "rules."))
	}
	return nil, fmt.Errorf("%s: the rules file is empty (or only blank lines and comments), which would accept every packet: refused, so a truncated or half-written file cannot open the firewall; write the rules (an iptables-save file ends with COMMIT), or set rules.allow_empty: true if an empty rule set is intended", name)
}

// Compile parses and compiles the rule set for ports whose ids are given by
// name (on the control side, without DPDK, ids are the config order). The
// result is immutable: filter.Install gives it the workers' counters and
// rate-limit buckets.
func Compile(cfg *config.Config, portIDs map[string]uint16, gen uint32) (*filter.Filter, error) {
	return CompileContext(context.Background(), cfg, portIDs, gen)
}

// CompileContext is Compile, abandoned (with ctx's cause) when ctx is done.
func CompileContext(ctx context.Context, cfg *config.Config, portIDs map[string]uint16, gen uint32) (*filter.Filter, error) {
	rs, err := ParseContext(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return filter.Compile(rs, filter.Env{Ports: portIDs, Context: ctx}, gen)
}

// ConfigPortIDs numbers the ports in config order (what DPDK does for the
// vdevs and allow-listed devices dpfw passes it, in that order).
func ConfigPortIDs(cfg *config.Config) map[string]uint16 {
	m := make(map[string]uint16, len(cfg.Ports))
	for i, p := range cfg.Ports {
		m[p.Name] = uint16(i)
	}
	return m
}

// PortInfos returns the pipeline's view of every port, indexed by port id:
// its link (zone), the paired port, and the hook its incoming traffic takes.
func PortInfos(cfg *config.Config, portIDs map[string]uint16) ([]dataplane.PortInfo, error) {
	n := 0
	for _, id := range portIDs {
		n = max(n, int(id)+1)
	}
	infos := make([]dataplane.PortInfo, n)
	for i := range infos {
		infos[i] = dataplane.PortInfo{Out: filter.NoPort, Zone: 0xffff}
	}
	for li, l := range cfg.Links {
		a, b := portIDs[l.Ports[0]], portIDs[l.Ports[1]]
		for _, side := range []struct {
			name     string
			in, peer uint16
		}{{l.Ports[0], a, b}, {l.Ports[1], b, a}} {
			hook := filter.HookForward
			switch {
			case l.Inside == "":
			case side.name == l.Inside:
				hook = filter.HookOutput // leaving the protected side
			default:
				hook = filter.HookInput // entering the protected side
			}
			infos[side.in] = dataplane.PortInfo{Zone: uint16(li), Out: side.peer, Hook: hook}
		}
	}
	return infos, nil
}

// TrackerConfig returns one worker's conntrack settings.
func TrackerConfig(cfg *config.Config, seed uint64) conntrack.Config {
	t := cfg.Conntrack.Timeouts
	to := conntrack.DefaultTimeouts()
	to.TCP[tcpstate.SynSent], to.TCP[tcpstate.SynSent2] = t.TCPSynSent, t.TCPSynSent
	to.TCP[tcpstate.None] = t.TCPSynSent
	to.TCP[tcpstate.SynRecv] = t.TCPSynRecv
	to.TCP[tcpstate.Established] = t.TCPEstablished
	to.TCP[tcpstate.FinWait] = t.TCPFinWait
	to.TCP[tcpstate.CloseWait] = t.TCPCloseWait
	to.TCP[tcpstate.LastAck] = t.TCPLastAck
	to.TCP[tcpstate.TimeWait] = t.TCPTimeWait
	to.TCP[tcpstate.Close] = t.TCPClose
	to.TCPRetrans, to.TCPUnack = t.TCPRetrans, t.TCPUnack
	to.UDP, to.UDPStream, to.ICMP, to.Generic = t.UDP, t.UDPStream, t.ICMP, t.Generic
	f := cfg.Conntrack.FTP
	ftp := conntrack.DefaultFTP()
	ftp.Enabled, ftp.Loose, ftp.AllowLowPorts, ftp.ExpectTimeout = f.Enabled, f.Loose, f.AllowLowPorts, f.ExpectTimeout
	ftp.MaxExpectations, ftp.MaxPerMaster = f.MaxExpectations, f.MaxPerConnection
	ftp.Ports = nil
	for _, p := range f.Ports {
		ftp.Ports = append(ftp.Ports, uint16(p))
	}
	return conntrack.Config{
		Capacity: cfg.Conntrack.Capacity,
		Timeouts: to,
		TCP:      tcpstate.Options{Loose: cfg.Conntrack.TCPLoose, Liberal: cfg.Conntrack.TCPLiberal},
		Seed:     seed,
		FTP:      ftp,

		NewPerSecond: cfg.Conntrack.NewPerSecond, NewBurst: cfg.Conntrack.NewBurst,
		AdaptiveStart: adaptive(cfg, cfg.Conntrack.Adaptive.Start), AdaptiveEnd: adaptive(cfg, cfg.Conntrack.Adaptive.End),
		AdaptiveFloor: cfg.Conntrack.Adaptive.Floor,
		// Flow export reports counters and start times.
		Accounting: cfg.Conntrack.Accounting || cfg.FlowExport.Enabled(),
		Timestamps: cfg.Conntrack.Timestamps || cfg.FlowExport.Enabled(),
		Sync:       cfg.Sync.Enabled(),
	}
}

// adaptive converts a percentage of the capacity to entries.
func adaptive(cfg *config.Config, percent int) int {
	return int(int64(cfg.Conntrack.Capacity) * int64(percent) / 100)
}

// Memory is what a config makes dpfw allocate at start-up; nothing on the
// packet path allocates afterwards, so this bounds its memory (plus the Go
// runtime and DPDK's own tables).
type Memory struct {
	Mbufs      int64 // the mempool: mbufs × (data room + mbuf header)
	Conntrack  int64 // connection tables, all workers
	PerConn    int   // bytes per tracked connection, all in
	Workers    int64 // pipelines (fragment tables, bursts, trace rings), FTP helpers, event and sync rings
	RateLimits int64 // -m limit / -m hashlimit buckets (f may be nil)
	// Rules is the compiled rule set (its classifier) and its counters,
	// one pair per rule and chain and worker. A reload builds the new
	// rule set beside the running one, so this much again is needed
	// briefly, and returned when the old one is released.
	Rules int64
	// Sets is the part of Rules the address sets take (SetEntries
	// entries).
	Sets, SetEntries int64
	// Sync is FTFW's resend queue (preallocated, in Total); SyncCache
	// the most the peer's connections can take (sync.max_entries; grown
	// as they come, not in Total).
	Sync, SyncCache int64
}

// MemoryPlan computes the start-up memory of cfg with compiled rules f.
func MemoryPlan(cfg *config.Config, f *filter.Filter) Memory {
	nw := int64(len(cfg.Workers.CPUs))
	per := conntrack.TableBytes(cfg.Conntrack.Capacity)
	tc := TrackerConfig(cfg, 0)
	if tc.Accounting {
		per += conntrack.AcctBytes * cfg.Conntrack.Capacity
	}
	if tc.Timestamps {
		per += conntrack.StampBytes * cfg.Conntrack.Capacity
	}
	m := Memory{
		Mbufs:     int64(cfg.Mempool.Mbufs) * int64(cfg.Mempool.DataRoom+config.MbufOverhead),
		Conntrack: int64(per) * nw,
		PerConn:   per / cfg.Conntrack.Capacity,
		Workers:   nw * int64(dataplane.PipelineBytes()+dataplane.TraceBytes()+conntrack.HelperBytes(TrackerConfig(cfg, 0).FTP)+conntrack.EventRingBytes()),
	}
	if s := &cfg.Sync; s.Enabled() {
		m.Workers += nw * int64(conntrack.SyncRingBytes())
		if s.Mode == "ftfw" {
			m.Sync = int64(s.ResendQueue) * int64(hasync.ResendEntryBytes)
		}
		entries := int64(s.MaxEntries)
		if entries == 0 {
			entries = int64(cfg.Conntrack.Capacity) * nw
		}
		m.SyncCache = entries * int64(hasync.CachedBytes)
	}
	if f != nil {
		m.RateLimits = int64(f.LimitBytes(len(cfg.Workers.CPUs)))
		m.Rules = int64(f.Stats.Bytes) + int64(f.NumDecisions())*int64(unsafe.Sizeof(filter.Counter{}))*nw
		m.Sets, m.SetEntries = int64(f.Stats.SetBytes), int64(f.Stats.SetEntries)
	}
	return m
}

// Total is the sum.
func (m Memory) Total() int64 {
	return m.Mbufs + m.Conntrack + m.Workers + m.RateLimits + m.Rules + m.Sync
}

// Fits checks the plan against the machine's memory (MemTotal of
// /proc/meminfo, or the value given, for tests): a plan larger than the
// machine cannot start, and `dpfw check` must say so as `run` would fail.
func (m Memory) Fits(machine int64) error {
	if machine <= 0 {
		return nil // unknown: nothing to check against
	}
	if t := m.Total(); t > machine {
		return fmt.Errorf("the memory plan (%s) is more than this machine has (%.1f MB): lower conntrack.capacity or mempool.mbufs", m, float64(machine)/(1<<20))
	}
	return nil
}

// MachineMemory returns the machine's memory in bytes (0 if unknown).
func MachineMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (m Memory) String() string {
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }
	s := fmt.Sprintf("%s: mbufs %s, connection tables %s (%d bytes per connection), per-worker state %s, rate limits %s, rules %s",
		mb(m.Total()), mb(m.Mbufs), mb(m.Conntrack), m.PerConn, mb(m.Workers), mb(m.RateLimits), mb(m.Rules))
	if m.SetEntries > 0 {
		s += fmt.Sprintf(" (sets %s: %d entries, %.1f bytes each)", mb(m.Sets), m.SetEntries, float64(m.Sets)/float64(m.SetEntries))
	}
	if m.SyncCache > 0 {
		s += fmt.Sprintf(", sync resend queue %s (and up to %s for the peer's connections as they come, sync.max_entries)", mb(m.Sync), mb(m.SyncCache))
	}
	return s
}

// ChecksumMode is the pipeline's checksum validation mode for the config.
func ChecksumMode(cfg *config.Config) dataplane.Checksum {
	switch cfg.Dataplane.Checksum {
	case "hardware":
		return dataplane.ChecksumHardware
	case "off":
		return dataplane.ChecksumOff
	}
	return dataplane.ChecksumFull
}
