// Package ruleset builds dpfw's compiled filter and conntrack settings from
// a validated config. It never touches DPDK, so "dpfw check" uses it too.
package ruleset

import (
	"fmt"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
)

// Parse parses the config's rule set: iptables syntax (rules.file or
// rules.iptables) or the structured form; an empty one accepts everything.
func Parse(cfg *config.Config) (*filter.Ruleset, error) {
	setMap, err := sets(cfg)
	if err != nil {
		return nil, err
	}
	name, text, err := cfg.RulesText()
	if err != nil {
		return nil, err
	}
	if text != "" {
		return filter.ParseIptablesSets(name, text, setMap)
	}
	return structured(cfg, setMap)
}

// Compile parses and compiles the rule set for ports whose ids are given by
// name (on the control side, without DPDK, ids are the config order). prev
// is the filter it replaces (nil at start-up): named rate limits keep their
// buckets.
func Compile(cfg *config.Config, portIDs map[string]uint16, gen uint32, prev *filter.Filter) (*filter.Filter, error) {
	rs, err := Parse(cfg)
	if err != nil {
		return nil, err
	}
	return filter.Compile(rs, filter.Env{Ports: portIDs, Workers: len(cfg.Workers.CPUs), Prev: prev}, gen)
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
	}
}

// adaptive converts a percentage of the capacity to entries.
func adaptive(cfg *config.Config, percent int) int {
	return int(int64(cfg.Conntrack.Capacity) * int64(percent) / 100)
}

// MemoryBytes estimates the connection tables' memory for the config.
func MemoryBytes(cfg *config.Config) string {
	per := conntrack.TableBytes(cfg.Conntrack.Capacity)
	return fmt.Sprintf("%d MB per worker × %d workers (%d bytes per connection)", per>>20, len(cfg.Workers.CPUs), per/cfg.Conntrack.Capacity)
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
