package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
)

// Config is dpfw's whole configuration.
type Config struct {
	EAL       EAL       `mapstructure:"eal"`
	Mempool   Mempool   `mapstructure:"mempool"`
	Ports     []Port    `mapstructure:"ports"`
	Links     []Link    `mapstructure:"links"`
	Workers   Workers   `mapstructure:"workers"`
	Dataplane Dataplane `mapstructure:"dataplane"`
	Conntrack Conntrack `mapstructure:"conntrack"`
	Rules     Rules     `mapstructure:"rules"`
	Metrics   Metrics   `mapstructure:"metrics"`
	// FlowExport sends IPFIX flow records to collectors.
	FlowExport FlowExport `mapstructure:"flow_export"`
	// Sync keeps connection state in sync with a peer (conntrackd's
	// protocol).
	Sync Sync `mapstructure:"sync"`
	Log  Log  `mapstructure:"log"`

	// Dir is the directory of the config file (for relative paths); not a key.
	Dir string `mapstructure:"-" json:"-"`
	// Name is the file name; Lines maps key paths ("rules.list[2]") to
	// their line. Not keys.
	Name  string         `mapstructure:"-" json:"-"`
	Lines map[string]int `mapstructure:"-" json:"-"`
	// rulesName and rulesText are the rule set's source, read once when
	// the config is loaded: what is compiled is what is hashed and
	// reported.
	rulesName, rulesText   string
	rulesName6, rulesText6 string
	// setTexts are the contents of the sets' files (rules.sets[i].file),
	// by set index, read with the rules.
	setTexts []string
}

// EAL configures DPDK's environment abstraction layer.
type EAL struct {
	// FilePrefix names this DPDK process's runtime files; every DPDK process
	// on a machine needs its own.
	FilePrefix string `mapstructure:"file_prefix"`
	// Hugepages is "auto" (use them if mounted and free, else --no-huge),
	// "yes" or "no".
	Hugepages string `mapstructure:"hugepages"`
	// MemoryMB is the memory EAL reserves (-m).
	MemoryMB int `mapstructure:"memory_mb"`
	// Args are extra EAL arguments, appended last.
	Args []string `mapstructure:"args"`
}

// Mempool sizes the mbuf pool.
type Mempool struct {
	Mbufs    int `mapstructure:"mbufs"`
	Cache    int `mapstructure:"cache"`
	DataRoom int `mapstructure:"data_room"`
}

// Port is one DPDK port.
type Port struct {
	// Name is how links and rules refer to the port.
	Name string `mapstructure:"name"`
	// Device is DPDK devargs for a virtual device ("net_tap0,iface=dpfw0")
	// or a PCI address ("0000:01:00.0", optionally with ",key=value" args).
	Device      string `mapstructure:"device"`
	RxDesc      int    `mapstructure:"rx_desc"`
	TxDesc      int    `mapstructure:"tx_desc"`
	Promiscuous *bool  `mapstructure:"promiscuous"`
	// MTU is the largest IP packet the port carries (set on the device:
	// a net_tap sets its kernel interface's). A frame of it must fit one
	// mbuf (mempool.data_room); larger frames are dropped and counted.
	MTU int `mapstructure:"mtu"`
}

// Link pairs two ports as a bump in the wire: what enters one leaves the other.
type Link struct {
	Name  string   `mapstructure:"name"`
	Ports []string `mapstructure:"ports"`
	// Inside names the port on the protected side (for INPUT/OUTPUT rules).
	Inside string `mapstructure:"inside"`
}

// Workers configures the polling lcores.
type Workers struct {
	// CPUs lists one CPU per worker.
	CPUs []int `mapstructure:"cpus"`
	// IdlePolls empty rounds in a row make a worker sleep IdleSleep
	// (0: busy-poll always, the DPDK default).
	IdlePolls int           `mapstructure:"idle_polls"`
	IdleSleep time.Duration `mapstructure:"idle_sleep"`
	// IdleSleepMax caps the pause, which doubles with each idle round
	// from IdleSleep: the most a packet waits after a quiet spell.
	IdleSleepMax time.Duration `mapstructure:"idle_sleep_max"`
	// Steering hands each packet to the worker that owns its connection
	// (symmetric hash of the tuple): "auto" (when several workers share a
	// port without RSS), "on" or "off".
	Steering string `mapstructure:"steering"`
}

// Dataplane holds packet-path settings.
type Dataplane struct {
	// NonIP is "pass" (forward ARP and other non-IP frames) or "drop".
	NonIP string `mapstructure:"non_ip"`
	// RejectPerSecond limits REJECT answers (RST, ICMP) per worker; over
	// it, rejected packets are dropped silently. 0 never answers.
	RejectPerSecond int `mapstructure:"reject_per_second"`
	// LogPerSecond limits LOG lines per worker; the rest are counted.
	LogPerSecond int `mapstructure:"log_per_second"`
	// Checksum is how packet checksums are validated: "full" (the NIC's
	// receive offload where the port has it, software otherwise), "hardware"
	// (the NIC's verdicts only) or "off". Failures are dropped as INVALID.
	Checksum string `mapstructure:"checksum"`
}

// Conntrack configures connection tracking.
type Conntrack struct {
	// Capacity is the most connections each worker tracks.
	Capacity int `mapstructure:"capacity"`
	// TCPLoose picks up TCP connections already open when dpfw started
	// (netfilter's nf_conntrack_tcp_loose; on by default there too).
	TCPLoose bool `mapstructure:"tcp_loose"`
	// TCPLiberal accepts out-of-window TCP segments
	// (nf_conntrack_tcp_be_liberal).
	TCPLiberal bool              `mapstructure:"tcp_liberal"`
	Timeouts   ConntrackTimeouts `mapstructure:"timeouts"`
	FTP        FTP               `mapstructure:"ftp"`
	// NewPerSecond caps new connections per worker per second (0: no
	// cap); NewBurst is how many may start at once.
	NewPerSecond int      `mapstructure:"new_per_second"`
	NewBurst     int      `mapstructure:"new_burst"`
	Adaptive     Adaptive `mapstructure:"adaptive"`
	// Accounting counts packets and bytes per connection and direction
	// (netfilter's nf_conntrack_acct, off by default there too), shown by
	// dpfw conntrack list; it costs 32 bytes per connection.
	Accounting bool `mapstructure:"accounting"`
	// Timestamps keeps when each connection started (netfilter's
	// nf_conntrack_timestamp, off by default there too), shown by dpfw
	// conntrack list -o timestamp; it costs 8 bytes per connection.
	Timestamps bool `mapstructure:"timestamps"`
}

// FlowExport sends a record of every connection to IPFIX collectors (RFC
// 7011, over UDP): when it ends and, for long ones, every ActiveTimeout.
// It turns on conntrack.accounting and conntrack.timestamps.
type FlowExport struct {
	// Collectors are host:port UDP addresses (none: no export).
	Collectors []string `mapstructure:"collectors"`
	// ActiveTimeout is how often a connection still open is reported.
	ActiveTimeout time.Duration `mapstructure:"active_timeout"`
	// TemplateRefresh is how often the templates are sent again (a UDP
	// collector that restarted learns them within it).
	TemplateRefresh time.Duration `mapstructure:"template_refresh"`
	// ObservationDomain is the IPFIX observation domain id.
	ObservationDomain uint32 `mapstructure:"observation_domain"`
}

// Enabled reports whether flows are exported.
func (f *FlowExport) Enabled() bool { return len(f.Collectors) > 0 }

// Sync keeps connection state in sync with a peer firewall on
// conntrackd's protocol (conntrack-tools 1.4), over UDP on a dedicated
// link: this node's connections go to the peer, the peer's fill this
// node's external cache.
type Sync struct {
	// Mode is "" (off), notrack (conntrackd's NOTRACK: best effort) or
	// ftfw (FTFW: acknowledged, lost messages sent again).
	Mode string `mapstructure:"mode"`
	// Window and ResendQueue tune FTFW: acknowledge every Window
	// messages (conntrackd's ACKWindowSize), keep up to ResendQueue
	// unacknowledged ones (ResendQueueSize).
	Window      int `mapstructure:"window"`
	ResendQueue int `mapstructure:"resend_queue"`
	// Role is active (forwards; the peer's connections wait in the
	// external cache), backup (forwards nothing until promoted: dpfw ha
	// promote, or FailoverAfter) or active-active (both forward; the
	// peer's connections are installed as they come).
	Role string `mapstructure:"role"`
	// FailoverAfter: a backup promotes itself when the peer has sent
	// nothing for this long (0: only dpfw ha promote).
	FailoverAfter time.Duration `mapstructure:"failover_after"`
	// Local is the address:port messages are received on; Peer where
	// they are sent (conntrackd's UDP IPv4_address, and
	// IPv4_Destination_Address with Port).
	Local string `mapstructure:"local"`
	Peer  string `mapstructure:"peer"`
	// Multicast, if set, is the group:port messages go to and come from
	// instead of Peer (conntrackd's Multicast IPv4_address or
	// IPv6_address, and Group), joined on Local's address (conntrackd's
	// IPv4_interface); Peer's address then only says whose messages are
	// taken.
	Multicast string `mapstructure:"multicast"`
	// KeyFile, if set, names a file holding a shared key (at least 16
	// bytes; surrounding white space ignored; not readable by others):
	// every datagram is then authenticated (HMAC-SHA256) and replays are
	// refused. Between dpfw nodes only: conntrackd has no such option.
	KeyFile string `mapstructure:"key_file"`
	// Interface, if set, binds the socket to that kernel interface.
	Interface string `mapstructure:"interface"`
	// Netns, if set, is the network namespace (ip netns) the socket is
	// opened in: a management namespace that keeps the sync link apart.
	Netns string `mapstructure:"netns"`
	// Link names the link whose connections are synced ("": the first).
	Link string `mapstructure:"link"`
	// MaxEntries bounds the external cache (0: conntrack.capacity for
	// each worker).
	MaxEntries int `mapstructure:"max_entries"`
	// DumpRate bounds a dump (the answer to the peer's resync request),
	// in connections per second.
	DumpRate int `mapstructure:"dump_rate"`
	// Refresh, if set, dumps every connection to the peer this often (at
	// DumpRate), refreshing the timeouts the peer holds for connections
	// whose state has not changed since (0: only on request and after
	// lost events).
	Refresh time.Duration `mapstructure:"refresh"`
	// MTU is the sync link's MTU: a datagram carries up to MTU-28 bytes
	// of messages.
	MTU int `mapstructure:"mtu"`
	// ReadyTimeout bounds how long a starting node waits for its peer's
	// answer to the resync it asks for before it reports ready (ready
	// file, /api/readyz, systemd): the peer must answer, and its dump
	// settle (the external cache stops growing), within it; past it the
	// node reports ready with what it has, and says so (0: do not wait).
	ReadyTimeout time.Duration `mapstructure:"ready_timeout"`
}

// Enabled reports whether connection state is synced.
func (s *Sync) Enabled() bool { return s.Mode != "" }

// Adaptive shrinks the timeouts of unassured connections (half-open TCP,
// unanswered UDP/ICMP) as the table fills, like pf's adaptive.start/end.
type Adaptive struct {
	// Start and End are fills in percent of conntrack.capacity: from
	// Start, timeouts shrink linearly, to nothing at End. Start 0: off.
	Start int `mapstructure:"start"`
	End   int `mapstructure:"end"`
	// Floor is the least time a connection lives after its last packet.
	Floor time.Duration `mapstructure:"floor"`
}

// FTP configures the FTP helper, which makes data connections RELATED.
type FTP struct {
	Enabled bool  `mapstructure:"enabled"`
	Ports   []int `mapstructure:"ports"`
	// Loose accepts announced addresses other than the control
	// connection's endpoints (off: such announcements are FTP bounces).
	Loose bool `mapstructure:"loose"`
	// AllowLowPorts accepts PORT/EPRT ports below 1024.
	AllowLowPorts bool          `mapstructure:"allow_low_ports"`
	ExpectTimeout time.Duration `mapstructure:"expect_timeout"`
	// MaxExpectations per worker, MaxPerConnection per control connection.
	MaxExpectations  int `mapstructure:"max_expectations"`
	MaxPerConnection int `mapstructure:"max_per_connection"`
}

// ConntrackTimeouts are idle timeouts; the defaults are netfilter's.
type ConntrackTimeouts struct {
	TCPSynSent     time.Duration `mapstructure:"tcp_syn_sent"`
	TCPSynRecv     time.Duration `mapstructure:"tcp_syn_recv"`
	TCPEstablished time.Duration `mapstructure:"tcp_established"`
	TCPFinWait     time.Duration `mapstructure:"tcp_fin_wait"`
	TCPCloseWait   time.Duration `mapstructure:"tcp_close_wait"`
	TCPLastAck     time.Duration `mapstructure:"tcp_last_ack"`
	TCPTimeWait    time.Duration `mapstructure:"tcp_time_wait"`
	TCPClose       time.Duration `mapstructure:"tcp_close"`
	TCPRetrans     time.Duration `mapstructure:"tcp_retrans"`
	TCPUnack       time.Duration `mapstructure:"tcp_unacknowledged"`
	UDP            time.Duration `mapstructure:"udp"`
	UDPStream      time.Duration `mapstructure:"udp_stream"`
	ICMP           time.Duration `mapstructure:"icmp"`
	Generic        time.Duration `mapstructure:"generic"`
}

// Rules says where the rule set comes from: iptables syntax (iptables-save
// output or "-A CHAIN …" lines) in a file or inline, or the structured form
// (policies, chains, list). With none, every chain accepts: dpfw forwards
// everything. Sets are named address lists for "-m set --match-set NAME
// src|dst" (iptables syntax) or src_set/dst_set (structured form).
type Rules struct {
	// File is a rules file, relative to the config file's directory.
	File string `mapstructure:"file"`
	// Iptables is the rule set inline.
	Iptables string `mapstructure:"iptables"`
	// File6 and Iptables6 are an ip6tables rule set (a file, or inline).
	// With one of them, File or Iptables is the iptables rule set and
	// applies to IPv4 only, and this one to IPv6 only, each with its own
	// chains and policies, as iptables and ip6tables do. Without, the one
	// rule set applies to both families.
	File6     string   `mapstructure:"file6"`
	Iptables6 string   `mapstructure:"iptables6"`
	Policies  Policies `mapstructure:"policies"`
	Chains    []string `mapstructure:"chains"`
	Sets      []Set    `mapstructure:"sets"`
	List      []Rule   `mapstructure:"list"`
	// AllowEmpty says that a rule set with no rules and no policies (no
	// rule set at all, an empty rules file or an empty rules.iptables) is
	// intended: every chain accepts. Without it such a rule set is an
	// error, so a truncated or not-yet-written file can never open the
	// firewall.
	AllowEmpty bool `mapstructure:"allow_empty"`
	// MaxFileSize bounds rules.file in bytes; a larger file is refused
	// before it is parsed.
	MaxFileSize int64 `mapstructure:"max_file_size"`
	// ReloadTimeout bounds a reload (reading, parsing and compiling);
	// past it the reload is abandoned and the running rules stay.
	ReloadTimeout time.Duration `mapstructure:"reload_timeout"`
	// Watch is what the file watcher reloads: "rename" (a config or rules
	// file renamed into place, the default), "write" (also files written
	// in place, once quiet for a second) or "off".
	Watch string `mapstructure:"watch"`
}

// Policies are the built-in chains' policies (ACCEPT, the default, or DROP).
type Policies struct {
	Input   string `mapstructure:"input"`
	Forward string `mapstructure:"forward"`
	Output  string `mapstructure:"output"`
}

// Set is a named address set: its addresses and prefixes listed, or in a
// file (relative to the config's directory) with one address, CIDR or
// range per line, or as ipset save writes them.
type Set struct {
	Name      string   `mapstructure:"name"`
	Addresses []string `mapstructure:"addresses"`
	File      string   `mapstructure:"file"`
}

// SetPath is rules.sets[i].file resolved against the config's directory
// ("" if the set lists its addresses).
func (c *Config) SetPath(i int) string {
	p := c.Rules.Sets[i].File
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(c.Dir, p)
	}
	return p
}

// SetText is the contents of rules.sets[i].file as read with the config.
func (c *Config) SetText(i int) string {
	if i < len(c.setTexts) {
		return c.setTexts[i]
	}
	return ""
}

// SameRuleText reports whether c and o have the same rule set apart from
// the sets' contents: the same rules text (files as read) or structured
// rules, and the same set names in the same order.
func (c *Config) SameRuleText(o *Config) bool {
	if c.rulesName != o.rulesName || c.rulesText != o.rulesText || c.rulesName6 != o.rulesName6 || c.rulesText6 != o.rulesText6 {
		return false
	}
	a, b := c.Rules, o.Rules
	if a.Policies != b.Policies || a.AllowEmpty != b.AllowEmpty || !slices.Equal(a.Chains, b.Chains) || !reflect.DeepEqual(a.List, b.List) || len(a.Sets) != len(b.Sets) {
		return false
	}
	for i := range a.Sets {
		if a.Sets[i].Name != b.Sets[i].Name {
			return false
		}
	}
	return true
}

// Rule is one rule in the structured form; each field is the iptables
// option of the same meaning, and Not lists the fields that are negated.
type Rule struct {
	Chain string `mapstructure:"chain" yaml:"chain"`
	// Family is ipv4 or ipv6 for a rule of one family only ("": as its
	// addresses and protocol say).
	Family     string   `mapstructure:"family" yaml:"family,omitempty"`
	Proto      string   `mapstructure:"proto" yaml:"proto,omitempty"`
	Src        []string `mapstructure:"src" yaml:"src,omitempty"`
	Dst        []string `mapstructure:"dst" yaml:"dst,omitempty"`
	SrcSet     string   `mapstructure:"src_set" yaml:"src_set,omitempty"`
	DstSet     string   `mapstructure:"dst_set" yaml:"dst_set,omitempty"`
	Sport      string   `mapstructure:"sport" yaml:"sport,omitempty"` // "22", "1024:65535", "80,443"
	Dport      string   `mapstructure:"dport" yaml:"dport,omitempty"`
	In         string   `mapstructure:"in" yaml:"in,omitempty"`
	Out        string   `mapstructure:"out" yaml:"out,omitempty"`
	State      []string `mapstructure:"state" yaml:"state,omitempty"` // NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED
	ICMPType   string   `mapstructure:"icmp_type" yaml:"icmp_type,omitempty"`
	Syn        bool     `mapstructure:"syn" yaml:"syn,omitempty"`
	TCPFlags   []string `mapstructure:"tcp_flags" yaml:"tcp_flags,omitempty"` // [MASK, COMP], e.g. ["SYN,ACK", "SYN"]
	Comment    string   `mapstructure:"comment" yaml:"comment,omitempty"`
	Target     string   `mapstructure:"target" yaml:"target"`
	RejectWith string   `mapstructure:"reject_with" yaml:"reject_with,omitempty"`
	LogPrefix  string   `mapstructure:"log_prefix" yaml:"log_prefix,omitempty"`
	Not        []string `mapstructure:"not" yaml:"not,omitempty"`
}

// Metrics configures the Prometheus endpoint and runtime API.
type Metrics struct {
	// Listen is host:port for /metrics; "" disables it.
	Listen string `mapstructure:"listen"`
	// StatsInterval logs a counter summary this often (0: never).
	StatsInterval time.Duration `mapstructure:"stats_interval"`
	// RuleSeries bounds the per-rule series (dpfw_rule_packets_total and
	// _bytes_total): a generated rule set of 100,000 rules would otherwise
	// make every scrape 200,000 series. Past it, chain policies and the
	// rules that have counted packets are exported, in rule order, up to
	// the bound; dpfw_rule_series_omitted says how many were left out.
	RuleSeries int `mapstructure:"rule_series"`
}

// Log configures structured logging.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text, json
}

// Default returns the defaults every loaded file starts from.
func Default() Config {
	return Config{
		EAL:       EAL{FilePrefix: "dpfw", Hugepages: "auto", MemoryMB: 512},
		Mempool:   Mempool{Mbufs: 16383, Cache: 256, DataRoom: 2048 + 128},
		Workers:   Workers{CPUs: []int{1}, IdlePolls: 0, IdleSleep: 50 * time.Microsecond, IdleSleepMax: time.Millisecond, Steering: "auto"},
		Dataplane: Dataplane{NonIP: "pass", RejectPerSecond: 1000, LogPerSecond: 100, Checksum: "full"},
		Conntrack: Conntrack{Capacity: 1 << 20, TCPLoose: true, Timeouts: ConntrackTimeouts{
			TCPSynSent: 2 * time.Minute, TCPSynRecv: 60 * time.Second, TCPEstablished: 5 * 24 * time.Hour,
			TCPFinWait: 2 * time.Minute, TCPCloseWait: 60 * time.Second, TCPLastAck: 30 * time.Second,
			TCPTimeWait: 2 * time.Minute, TCPClose: 10 * time.Second, TCPRetrans: 5 * time.Minute,
			TCPUnack: 5 * time.Minute, UDP: 30 * time.Second, UDPStream: 120 * time.Second,
			ICMP: 30 * time.Second, Generic: 600 * time.Second,
		}, FTP: FTP{Enabled: true, Ports: []int{21}, ExpectTimeout: 300 * time.Second, MaxExpectations: 1024, MaxPerConnection: 4},
			NewBurst: 1000, Adaptive: Adaptive{Start: 60, End: 100, Floor: 2 * time.Second}},
		Rules:      Rules{MaxFileSize: DefaultMaxFileSize, ReloadTimeout: 30 * time.Second, Watch: "rename"},
		Metrics:    Metrics{Listen: "127.0.0.1:9469", StatsInterval: 0, RuleSeries: 10000},
		FlowExport: FlowExport{ActiveTimeout: 60 * time.Second, TemplateRefresh: 10 * time.Minute, ObservationDomain: 1},
		Sync:       Sync{Role: "active", FailoverAfter: 3 * time.Second, Window: 300, ResendQueue: 131072, DumpRate: 100000, MTU: 1500, ReadyTimeout: 10 * time.Second},
		Log:        Log{Level: "info", Format: "text"},
	}
}

// MinMbufs returns the fewest mbufs that keep every rx and tx ring full and
// leave room for per-lcore caches and bursts in flight; below it, rx
// queues run dry and the device drops packets (rx_nombuf).
func (c *Config) MinMbufs() int {
	nw := len(c.Workers.CPUs)
	n := 0
	for _, p := range c.Ports {
		rx, tx := p.RxDesc, p.TxDesc
		if rx == 0 {
			rx = 1024
		}
		if tx == 0 {
			tx = 1024
		}
		n += nw * (rx + tx)
	}
	// Per-lcore caches (workers and the main lcore), and each worker's
	// burst in flight plus its staged tx and steering arrays.
	n += (nw + 1) * c.Mempool.Cache * 3 / 2
	n += nw * 32 * 4
	// Fragments held until their datagram is complete.
	n += nw * HeldFragments
	return n
}

// HeldFragments is the most fragments a worker holds while their datagrams
// are incomplete (dataplane.FragHeld; control/daemon checks they agree).
const HeldFragments = 256

// RulesText returns the rule set's text and a name for error messages:
// the rules file's contents as read when the config was loaded, the
// inline rules, or "" (no iptables-syntax rule set). It does no I/O.
func (c *Config) RulesText() (name, text string) { return c.rulesName, c.rulesText }

// RulesText6 is RulesText for the ip6tables rule set (rules.file6 or
// rules.iptables6; "" if none).
func (c *Config) RulesText6() (name, text string) { return c.rulesName6, c.rulesText6 }

// RulesPath6 is rules.file6 resolved against the config's directory.
func (c *Config) RulesPath6() string {
	p := c.Rules.File6
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(c.Dir, p)
	}
	return p
}

// RulesPath is rules.file resolved against the config's directory ("" if
// unset).
func (c *Config) RulesPath() string {
	p := c.Rules.File
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(c.Dir, p)
	}
	return p
}

// readRules reads the rule set's source once, bounded and stable.
func (c *Config) readRules() error {
	switch {
	case c.Rules.File != "":
		p := c.RulesPath()
		b, err := ReadStable("rules.file", p, c.Rules.MaxFileSize)
		if err != nil {
			return err
		}
		c.rulesName, c.rulesText = p, string(b)
	case c.Rules.Iptables != "":
		c.rulesName, c.rulesText = "rules.iptables", c.Rules.Iptables
	}
	switch {
	case c.Rules.File6 != "":
		p := c.RulesPath6()
		b, err := ReadStable("rules.file6", p, c.Rules.MaxFileSize)
		if err != nil {
			return err
		}
		c.rulesName6, c.rulesText6 = p, string(b)
	case c.Rules.Iptables6 != "":
		c.rulesName6, c.rulesText6 = "rules.iptables6", c.Rules.Iptables6
	}
	c.setTexts = make([]string, len(c.Rules.Sets))
	for i, s := range c.Rules.Sets {
		if s.File == "" {
			continue
		}
		b, err := ReadStable(fmt.Sprintf("rules.sets[%d].file", i), c.SetPath(i), c.Rules.MaxFileSize)
		if err != nil {
			return err
		}
		c.setTexts[i] = string(b)
	}
	return nil
}

// PortDefaults fills a port's unset fields.
func (p *Port) applyDefaults() {
	if p.RxDesc == 0 {
		p.RxDesc = 1024
	}
	if p.TxDesc == 0 {
		p.TxDesc = 1024
	}
	if p.MTU == 0 {
		p.MTU = 1500
	}
	if p.Promiscuous == nil {
		t := true
		p.Promiscuous = &t
	}
}

// FieldError is a validation error about one key.
type FieldError struct {
	Key string // e.g. "links[0].ports[1]"
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

var (
	nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,31}$`)
	pciRE  = regexp.MustCompile(`^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)
	vdevRE = regexp.MustCompile(`^net_[a-z_]+[0-9]+$`)
)

// IsPCI reports whether a device string names a PCI device.
func IsPCI(device string) bool { return pciRE.MatchString(devName(device)) }

// DevName returns the DPDK device name of devargs (the part before the first comma).
func devName(device string) string {
	name, _, _ := strings.Cut(device, ",")
	return name
}

// DeviceName returns the DPDK device name a port's devargs probe as.
func (p *Port) DeviceName() string { return devName(p.Device) }

// Validate checks every value and returns all problems found.
func (c *Config) Validate() []FieldError {
	v := &validation{c: c}
	for _, check := range checks {
		check(v)
	}
	return v.errs
}

// validation collects one Validate's errors.
type validation struct {
	c    *Config
	errs []FieldError
	// ports maps each port name to its index (checkPorts, for checkLinks).
	ports map[string]int
}

func (v *validation) add(key, format string, a ...any) {
	v.errs = append(v.errs, FieldError{Key: key, Msg: fmt.Sprintf(format, a...)})
}

// checks are Validate's steps, one per section, in the order their errors
// are reported.
var checks = []func(*validation){
	checkEAL, checkMempool, checkPorts, checkLinks, checkWorkers,
	checkDataplane, checkConntrack, checkFTP, checkRules, checkFlowExport, checkSync,
}

// checkSync checks the sync link.
func checkSync(v *validation) {
	s := &v.c.Sync
	switch s.Mode {
	case "":
		return
	case "notrack", "ftfw":
	case "alarm":
		v.add("sync.mode", "%q is not supported: use ftfw (reliable) or notrack (best effort)", s.Mode)
	default:
		v.add("sync.mode", "%q: want notrack or ftfw, or leave it empty for no sync", s.Mode)
	}
	if !slices.Contains([]string{"active", "backup", "active-active"}, s.Role) {
		v.add("sync.role", "%q: want active, backup or active-active", s.Role)
	}
	if s.Refresh != 0 && (s.Refresh < time.Second || s.Refresh > 24*time.Hour) {
		v.add("sync.refresh", "%s: want 0 (off) or 1s to 24h", s.Refresh)
	}
	if s.ReadyTimeout < 0 || s.ReadyTimeout > 10*time.Minute {
		v.add("sync.ready_timeout", "%s: want 0 (do not wait for the peer's resync) to 10m", s.ReadyTimeout)
	}
	if s.FailoverAfter != 0 && (s.FailoverAfter < 2*time.Second || s.FailoverAfter > time.Hour) {
		v.add("sync.failover_after", "%s: want 0 (only dpfw ha promote) or 2s to 1h: the peer's heartbeats come every second", s.FailoverAfter)
	}
	for _, b := range []struct {
		key       string
		val, l, h int
		what      string
	}{
		{"window", s.Window, 1, 100000, "messages per acknowledgement"},
		{"resend_queue", s.ResendQueue, 1024, 1 << 24, "messages"},
		{"max_entries", s.MaxEntries, 0, 1 << 28, "connections (0: conntrack.capacity for each worker)"},
		{"dump_rate", s.DumpRate, 100, 10_000_000, "connections per second"},
		{"mtu", s.MTU, 576, 65535, "bytes"},
	} {
		if b.val < b.l || b.val > b.h {
			v.add("sync."+b.key, "%d: want %d to %d %s", b.val, b.l, b.h, b.what)
		}
	}
	checkSyncLink(v, s)
	if s.KeyFile != "" {
		if _, err := LoadSyncKey(s.KeyFile); err != nil {
			v.add("sync.key_file", "%v", err)
		}
	}
}

// maxKeyFile bounds sync.key_file.
const maxKeyFile = 4096

// LoadSyncKey reads sync.key_file's shared key: at least 16 bytes once
// the surrounding white space is trimmed, in a file others cannot read.
func LoadSyncKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%v (create it: head -c 32 /dev/urandom | base64 > %s; chmod 600 %s; the same file on the peer)", err, path, path)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%s is accessible to others (mode %v): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: want a regular file of at most %d bytes holding the key (head -c 32 /dev/urandom | base64 > %s)", path, maxKeyFile, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimSpace(b)
	if len(key) < 16 {
		return nil, fmt.Errorf("%s holds %d bytes of key: want at least 16 (head -c 32 /dev/urandom | base64 > %s)", path, len(key), path)
	}
	return key, nil
}

// checkSyncLink checks where the sync link is: its addresses, interface,
// namespace and the dpfw link whose connections it carries.
func checkSyncLink(v *validation, s *Sync) {
	var addrs [2]netip.AddrPort
	for i, k := range []string{"local", "peer"} {
		val := []string{s.Local, s.Peer}[i]
		ap, err := netip.ParseAddrPort(val)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			v.add("sync."+k, "%q: want address:port, e.g. 198.18.9.1:3780 (conntrackd's default port is 3780)", val)
		}
		addrs[i] = ap
	}
	if addrs[0].IsValid() && addrs[1].IsValid() && addrs[0].Addr().Unmap().Is4() != addrs[1].Addr().Unmap().Is4() {
		v.add("sync.peer", "%s and sync.local %s are of two families", s.Peer, s.Local)
	}
	checkMulticast(v, s, addrs[0])
	if s.Interface != "" && (len(s.Interface) > 15 || strings.ContainsAny(s.Interface, "/ :")) {
		v.add("sync.interface", "%q: want a kernel interface name", s.Interface)
	}
	if s.Netns != "" && !netnsRE.MatchString(s.Netns) {
		v.add("sync.netns", "%q: want a network namespace name (ip netns list)", s.Netns)
	}
	if s.Link != "" && !slices.ContainsFunc(v.c.Links, func(l Link) bool { return l.Name == s.Link }) {
		names := make([]string, len(v.c.Links))
		for i, l := range v.c.Links {
			names[i] = l.Name
		}
		v.add("sync.link", "no link named %q%s", s.Link, suggest(s.Link, names))
	}
}

// checkMulticast checks sync.multicast: a multicast group and port, of
// local's family; IPv6 joins on sync.interface.
func checkMulticast(v *validation, s *Sync, local netip.AddrPort) {
	if s.Multicast == "" {
		return
	}
	g, err := netip.ParseAddrPort(s.Multicast)
	switch {
	case err != nil || g.Port() == 0 || !g.Addr().IsMulticast() || g.Addr().Zone() != "":
		v.add("sync.multicast", "%q: want a multicast group:port, e.g. 225.0.0.50:3780 (conntrackd's Multicast IPv4_address and Group)", s.Multicast)
	case local.IsValid() && local.Addr().Unmap().Is4() != g.Addr().Unmap().Is4():
		v.add("sync.multicast", "%s and sync.local %s are of two families", s.Multicast, s.Local)
	case g.Addr().Is6() && s.Interface == "":
		v.add("sync.interface", "IPv6 multicast (sync.multicast %s) joins the group on an interface: name it", s.Multicast)
	}
}

// checkFlowExport checks the IPFIX collectors and intervals.
func checkFlowExport(v *validation) {
	f := &v.c.FlowExport
	for i, c := range f.Collectors {
		host, port, err := net.SplitHostPort(c)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.add(fmt.Sprintf("flow_export.collectors[%d]", i), "%q: want host:port, e.g. 127.0.0.1:4739 (IPFIX over UDP)", c)
		}
	}
	if f.ActiveTimeout < time.Second || f.ActiveTimeout > 24*time.Hour {
		v.add("flow_export.active_timeout", "%s: want 1s to 24h", f.ActiveTimeout)
	}
	if f.TemplateRefresh < time.Second || f.TemplateRefresh > 24*time.Hour {
		v.add("flow_export.template_refresh", "%s: want 1s to 24h", f.TemplateRefresh)
	}
}

var netnsRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

var filePrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// checkEAL checks the EAL options.
func checkEAL(v *validation) {
	c := v.c
	if !filePrefixRE.MatchString(c.EAL.FilePrefix) {
		v.add("eal.file_prefix", "%q: want 1-32 letters, digits, '_' or '-'", c.EAL.FilePrefix)
	}
	if !slices.Contains([]string{"auto", "yes", "no"}, c.EAL.Hugepages) {
		v.add("eal.hugepages", "%q: want auto, yes or no", c.EAL.Hugepages)
	}
	if c.EAL.MemoryMB < 64 || c.EAL.MemoryMB > 1<<20 {
		v.add("eal.memory_mb", "%d: want 64 to 1048576", c.EAL.MemoryMB)
	}
}

// checkMempool checks the mbuf pool.
func checkMempool(v *validation) {
	c := v.c
	if c.Mempool.Mbufs < 1024 || c.Mempool.Mbufs > MaxMbufs {
		v.add("mempool.mbufs", "%d: want 1024 to %d", c.Mempool.Mbufs, MaxMbufs)
	} else if need := int64(c.Mempool.Mbufs) * int64(c.Mempool.DataRoom+MbufOverhead); need > int64(c.EAL.MemoryMB)<<20 {
		v.add("mempool.mbufs", "%d mbufs of %d bytes (data room) + %d (header) need %d MB, more than eal.memory_mb %d: raise eal.memory_mb to at least %d or lower mempool.mbufs",
			c.Mempool.Mbufs, c.Mempool.DataRoom, MbufOverhead, need>>20, c.EAL.MemoryMB, need>>20+64)
	}
	if c.Mempool.Cache < 0 || c.Mempool.Cache > 512 {
		v.add("mempool.cache", "%d: want 0 to 512 (RTE_MEMPOOL_CACHE_MAX_SIZE)", c.Mempool.Cache)
	}
	if c.Mempool.DataRoom < 128+64 || c.Mempool.DataRoom > 65535 {
		v.add("mempool.data_room", "%d: want 192 to 65535 bytes (headroom 128 included)", c.Mempool.DataRoom)
	}
}

// checkPorts checks the ports, and records their names for checkLinks.
func checkPorts(v *validation) {
	c := v.c
	if len(c.Ports) == 0 {
		v.add("ports", "no ports: list at least two, e.g. {name: outside, device: net_tap0,iface=dpfw0}")
	}
	names := map[string]int{}
	v.ports = names
	devs := map[string]int{}
	for i := range c.Ports {
		p := &c.Ports[i]
		key := fmt.Sprintf("ports[%d]", i)
		if !nameRE.MatchString(p.Name) {
			v.add(key+".name", "%q: want a name of letters, digits, '_', '.', '-', starting with a letter", p.Name)
		} else if j, dup := names[p.Name]; dup {
			v.add(key+".name", "%q is already the name of ports[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
		dn := p.DeviceName()
		switch {
		case p.Device == "":
			v.add(key+".device", "missing: give DPDK devargs (net_tap0,iface=NAME) or a PCI address (0000:01:00.0)")
		case !IsPCI(p.Device) && !vdevRE.MatchString(dn):
			v.add(key+".device", "%q: want a PCI address (0000:01:00.0) or a virtual device name such as net_tap0 or net_pcap0 followed by ,key=value args", p.Device)
		default:
			if j, dup := devs[dn]; dup {
				v.add(key+".device", "device %q is already used by ports[%d]", dn, j)
			}
			devs[dn] = i
		}
		if p.MTU < 68 || p.MTU > 9600 {
			v.add(key+".mtu", "%d: want 68 to 9600 bytes", p.MTU)
		}
		for _, d := range []struct {
			k string
			v int
		}{{"rx_desc", p.RxDesc}, {"tx_desc", p.TxDesc}} {
			if d.v < 32 || d.v > 32768 || d.v&(d.v-1) != 0 {
				v.add(key+"."+d.k, "%d: want a power of two from 32 to 32768", d.v)
			}
		}
	}
}

// checkLinks checks the links between ports.
func checkLinks(v *validation) {
	c := v.c
	used := map[string]string{}
	for i, l := range c.Links {
		key := fmt.Sprintf("links[%d]", i)
		if len(l.Ports) != 2 {
			v.add(key+".ports", "want exactly two port names, e.g. [outside, inside]; got %d", len(l.Ports))
			continue
		}
		if l.Ports[0] == l.Ports[1] {
			v.add(key+".ports", "a link joins two different ports; both are %q", l.Ports[0])
		}
		for j, pn := range l.Ports {
			if _, ok := v.ports[pn]; !ok {
				v.add(fmt.Sprintf("%s.ports[%d]", key, j), "no port named %q%s", pn, suggest(pn, keys(v.ports)))
				continue
			}
			if other, dup := used[pn]; dup {
				v.add(fmt.Sprintf("%s.ports[%d]", key, j), "port %q is already in link %s; a port belongs to one link", pn, other)
			}
			used[pn] = key
		}
		if l.Inside != "" && !slices.Contains(l.Ports, l.Inside) {
			v.add(key+".inside", "%q is not one of this link's ports %v", l.Inside, l.Ports)
		}
	}
	if len(c.Links) == 0 && len(c.Ports) > 0 {
		v.add("links", "no links: pair two ports, e.g. links: [{name: wire, ports: [outside, inside], inside: inside}]")
	}
}

// checkWorkers checks the workers and the mbufs they need.
func checkWorkers(v *validation) {
	c := v.c
	if len(c.Workers.CPUs) == 0 {
		v.add("workers.cpus", "no workers: list one CPU per worker, e.g. [1]")
	}
	if len(c.Workers.CPUs) > 8 {
		v.add("workers.cpus", "%d workers: at most 8 are supported", len(c.Workers.CPUs))
	}
	seen := map[int]bool{}
	for i, cpu := range c.Workers.CPUs {
		if cpu < 0 || cpu > 1023 {
			v.add(fmt.Sprintf("workers.cpus[%d]", i), "%d: want a CPU number from 0", cpu)
		} else if seen[cpu] {
			v.add(fmt.Sprintf("workers.cpus[%d]", i), "CPU %d is listed twice; one worker per CPU", cpu)
		}
		seen[cpu] = true
	}
	if !slices.Contains([]string{"auto", "on", "off"}, c.Workers.Steering) {
		v.add("workers.steering", "%q: want auto, on or off", c.Workers.Steering)
	}
	if need := c.MinMbufs(); c.Mempool.Mbufs < need && len(c.Workers.CPUs) > 0 {
		v.add("mempool.mbufs", "%d is too small: %d ports × %d queues of rx_desc + tx_desc descriptors, plus per-worker caches and bursts, need at least %d; raise mempool.mbufs or lower rx_desc/tx_desc",
			c.Mempool.Mbufs, len(c.Ports), len(c.Workers.CPUs), need)
	}
	if c.Workers.IdlePolls < 0 {
		v.add("workers.idle_polls", "%d: want 0 (always busy-poll) or more", c.Workers.IdlePolls)
	}
	if c.Workers.IdleSleep < 0 || c.Workers.IdleSleep > time.Second {
		v.add("workers.idle_sleep", "%s: want 0 to 1s", c.Workers.IdleSleep)
	}
	if c.Workers.IdleSleepMax < c.Workers.IdleSleep || c.Workers.IdleSleepMax > time.Second {
		v.add("workers.idle_sleep_max", "%s: want idle_sleep (%s) to 1s", c.Workers.IdleSleepMax, c.Workers.IdleSleep)
	}
}

// checkDataplane checks the dataplane options.
func checkDataplane(v *validation) {
	c := v.c
	if c.Dataplane.RejectPerSecond < 0 || c.Dataplane.RejectPerSecond > 1_000_000 {
		v.add("dataplane.reject_per_second", "%d: want 0 to 1000000", c.Dataplane.RejectPerSecond)
	}
	if c.Dataplane.LogPerSecond < 0 || c.Dataplane.LogPerSecond > 100_000 {
		v.add("dataplane.log_per_second", "%d: want 0 to 100000", c.Dataplane.LogPerSecond)
	}
	switch c.Dataplane.Checksum {
	case "full", "hardware", "off":
	default:
		v.add("dataplane.checksum", "%q: want full, hardware or off", c.Dataplane.Checksum)
	}
	if c.Dataplane.NonIP != "pass" && c.Dataplane.NonIP != "drop" {
		v.add("dataplane.non_ip", "%q: want pass or drop", c.Dataplane.NonIP)
	}
}

// checkConntrack checks the connection table and its timeouts.
func checkConntrack(v *validation) {
	c := v.c
	if c.Conntrack.Capacity < 16 || c.Conntrack.Capacity > 1<<28 {
		v.add("conntrack.capacity", "%d: want 16 to 268435456 connections per worker", c.Conntrack.Capacity)
	}
	for _, t := range []struct {
		k string
		v time.Duration
	}{
		{"tcp_syn_sent", c.Conntrack.Timeouts.TCPSynSent}, {"tcp_syn_recv", c.Conntrack.Timeouts.TCPSynRecv},
		{"tcp_established", c.Conntrack.Timeouts.TCPEstablished}, {"tcp_fin_wait", c.Conntrack.Timeouts.TCPFinWait},
		{"tcp_close_wait", c.Conntrack.Timeouts.TCPCloseWait}, {"tcp_last_ack", c.Conntrack.Timeouts.TCPLastAck},
		{"tcp_time_wait", c.Conntrack.Timeouts.TCPTimeWait}, {"tcp_close", c.Conntrack.Timeouts.TCPClose},
		{"tcp_retrans", c.Conntrack.Timeouts.TCPRetrans}, {"tcp_unacknowledged", c.Conntrack.Timeouts.TCPUnack},
		{"udp", c.Conntrack.Timeouts.UDP}, {"udp_stream", c.Conntrack.Timeouts.UDPStream},
		{"icmp", c.Conntrack.Timeouts.ICMP}, {"generic", c.Conntrack.Timeouts.Generic},
	} {
		// Entries keep expiry in 32-bit milliseconds compared with wrap-around
		// arithmetic: timeouts must stay below 24 days.
		if t.v < time.Second || t.v > 20*24*time.Hour {
			v.add("conntrack.timeouts."+t.k, "%s: want 1s to 480h", t.v)
		}
	}
}

// checkFTP checks the FTP helper and the NEW rate cap.
func checkFTP(v *validation) {
	c := v.c
	for i, p := range c.Conntrack.FTP.Ports {
		if p < 1 || p > 65535 {
			v.add(fmt.Sprintf("conntrack.ftp.ports[%d]", i), "%d: want 1-65535", p)
		}
	}
	if t := c.Conntrack.FTP.ExpectTimeout; t < time.Second || t > time.Hour {
		v.add("conntrack.ftp.expect_timeout", "%s: want 1s to 1h", t)
	}
	if n := c.Conntrack.FTP.MaxExpectations; n < 1 || n > 1<<20 {
		v.add("conntrack.ftp.max_expectations", "%d: want 1 to 1048576", n)
	}
	if n := c.Conntrack.FTP.MaxPerConnection; n < 1 || n > 64 {
		v.add("conntrack.ftp.max_per_connection", "%d: want 1 to 64", n)
	}
	if n := c.Conntrack.NewPerSecond; n < 0 || n > 1e9 {
		v.add("conntrack.new_per_second", "%d: want 0 (no cap) to 1000000000", n)
	}
	if n := c.Conntrack.NewBurst; n < 1 || n > 1e9 {
		v.add("conntrack.new_burst", "%d: want 1 to 1000000000", n)
	}
	if a := c.Conntrack.Adaptive; a.Start != 0 || a.End != 0 {
		if a.Start < 0 || a.Start >= a.End || a.End > 1000 {
			v.add("conntrack.adaptive", "start %d, end %d: want 0 < start < end ≤ 1000 (percent of capacity), or start 0 to turn it off", a.Start, a.End)
		}
	}
	if f := c.Conntrack.Adaptive.Floor; f < 0 || f > time.Hour {
		v.add("conntrack.adaptive.floor", "%s: want 0s to 1h", f)
	}
}

// checkRules checks the rule set's form, reloads, metrics and logging.
func checkRules(v *validation) {
	c := v.c
	forms := 0
	for _, set := range []bool{c.Rules.File != "", c.Rules.Iptables != "",
		len(c.Rules.List) > 0 || len(c.Rules.Chains) > 0 || c.Rules.Policies != (Policies{})} {
		if set {
			forms++
		}
	}
	if forms > 1 {
		v.add("rules", "give one of rules.file, rules.iptables, or the structured form (policies, chains, list)")
	}
	if c.Rules.File6 != "" || c.Rules.Iptables6 != "" {
		switch {
		case c.Rules.File6 != "" && c.Rules.Iptables6 != "":
			v.add("rules", "give one of rules.file6 and rules.iptables6")
		case c.Rules.File == "" && c.Rules.Iptables == "":
			v.add("rules", "rules.file6/rules.iptables6 (the IPv6 rule set) goes with rules.file or rules.iptables (the IPv4 one): with both, each family has its own chains and policies")
		}
	}
	if c.Metrics.Listen != "" {
		if msg := checkListen(c.Metrics.Listen); msg != "" {
			v.add("metrics.listen", "%s", msg)
		}
	}
	if !slices.Contains([]string{"rename", "write", "off"}, c.Rules.Watch) {
		v.add("rules.watch", "%q: want rename (reload files renamed into place), write (also files written in place) or off", c.Rules.Watch)
	}
	if t := c.Rules.ReloadTimeout; t < time.Second || t > 10*time.Minute {
		v.add("rules.reload_timeout", "%s: want 1s to 10m", t)
	}
	if n := c.Rules.MaxFileSize; n < 1024 || n > 1<<32 {
		v.add("rules.max_file_size", "%d: want 1024 to 4294967296 bytes (default %d)", n, DefaultMaxFileSize)
	}
	if n := c.Metrics.RuleSeries; n < 1 || n > maxRuleSeries {
		v.add("metrics.rule_series", "%d: want 1 to %d", n, maxRuleSeries)
	}
	if c.Metrics.StatsInterval < 0 {
		v.add("metrics.stats_interval", "%s: want 0 (off) or a positive duration", c.Metrics.StatsInterval)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.add("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.add("log.format", "%q: want text or json", c.Log.Format)
	}
}

// MbufHeadroom is the room DPDK keeps before each frame in an mbuf
// (RTE_PKTMBUF_HEADROOM).
const MbufHeadroom = 128

// maxL2 is the most link-layer bytes before an MTU-sized packet that dpfw
// decodes: Ethernet and two VLAN tags.
const maxL2 = 14 + 2*4

// Warnings lists what is valid but likely wrong, each with its fix.
func (c *Config) Warnings() []FieldError {
	var out []FieldError
	room := c.Mempool.DataRoom - MbufHeadroom
	for i, p := range c.Ports {
		if need := p.MTU + maxL2; need > room {
			out = append(out, FieldError{Key: fmt.Sprintf("ports[%d].mtu", i), Msg: fmt.Sprintf(
				"%d: a frame of this MTU (up to %d bytes with VLAN tags) does not fit one mbuf (mempool.data_room %d holds %d after the %d-byte headroom): such frames are dropped (drop reason oversize, or by the device: port rx_errors); raise mempool.data_room to at least %d or lower the MTU",
				p.MTU, need, c.Mempool.DataRoom, room, MbufHeadroom, need+MbufHeadroom)})
		}
	}
	return out
}

// MaxMbufs bounds mempool.mbufs (DPDK's mempools count objects in 32
// bits; 2^28 mbufs of 2 KB are already 512 GB).
const MaxMbufs = 1 << 28

// MbufOverhead is the memory an mbuf takes besides its data room: struct
// rte_mbuf (two cache lines) plus the mempool's per-object header.
const MbufOverhead = 128 + 64

// checkListen validates a host:port listen address as net.Listen would
// take it, and returns what is wrong ("" if nothing).
func checkListen(s string) string {
	h, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q: want host:port, e.g. 127.0.0.1:9469 (%v)", s, err)
	}
	if h != "" && h != "localhost" {
		if _, err := netip.ParseAddr(h); err != nil {
			return fmt.Sprintf("%q: host must be an IP address or localhost", s)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("%q: port %q: want a number 0-65535 (0: any free port)", s, port)
	}
	return ""
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// suggest returns "; did you mean X?" for the closest candidate, or a list.
func suggest(bad string, candidates []string) string {
	if best := Nearest(bad, candidates); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	if len(candidates) > 0 {
		return fmt.Sprintf("; known: %s", strings.Join(candidates, ", "))
	}
	return ""
}

// Nearest returns the candidate closest to s by edit distance (case-insensitive),
// or "" if none is close enough to be a plausible typo.
func Nearest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := levenshtein.ComputeDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(s)/3) {
		return best
	}
	return ""
}

// maxRuleSeries bounds metrics.rule_series: the most decisions a rule set
// has (rules.MaxDecisions).
const maxRuleSeries = 1 << 20
