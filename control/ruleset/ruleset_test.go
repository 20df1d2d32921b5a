package ruleset_test

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

const base = `
eal: {file_prefix: t}
ports:
  - {name: outside, device: "net_tap0,iface=a"}
  - {name: inside, device: "net_tap1,iface=b"}
links: [{name: w, ports: [outside, inside], inside: inside}]
`

func load(t testing.TB, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Load("c.yaml", []byte(base+extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func compile(t testing.TB, cfg *config.Config) *filter.Filter {
	t.Helper()
	f, err := ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func pkt(src string, proto uint8, dport uint16) *packet.Parsed {
	p := &packet.Parsed{Kind: packet.IPv4, Proto: proto, DstPort: dport, SrcPort: 40000}
	a := strings.Split(src, ".")
	for i := range 4 {
		n := 0
		for _, c := range a[i] {
			n = n*10 + int(c-'0')
		}
		p.Src[i] = byte(n)
	}
	p.Dst = [16]byte{198, 18, 1, 1}
	return p
}

func TestStructuredExample(t *testing.T) {
	cfg, err := config.LoadFile("../../configs/structured.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := compile(t, cfg)
	for _, tt := range []struct {
		src   string
		dport uint16
		want  filter.Verdict
	}{
		{"198.18.0.1", 22, filter.Accept},  // in the admins set
		{"198.18.54.9", 22, filter.Accept}, // in the set's /24
		{"198.18.7.7", 22, filter.Reject},  // not an admin: tcp-reset
		{"198.18.7.7", 21, filter.Accept},  // FTP control
		{"198.18.7.7", 8080, filter.Drop},  // policy
	} {
		r := f.Run(filter.Ctx{}, pkt(tt.src, 6, tt.dport), rules.StateNew, filter.HookInput, 0, 1)
		if r.Verdict != tt.want {
			t.Errorf("%s → %d: %v; want %v", tt.src, tt.dport, r.Verdict, tt.want)
		}
	}
}

func TestStructuredErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"rules:\n  list:\n    - {chain: INPUT, proto: tcp, dport: \"70000\", target: ACCEPT}\n",
			`c.yaml:9: rules.list[0].dport: "70000": invalid port`},
		{"rules:\n  list:\n    - {chain: INPUT, src_set: admin, target: ACCEPT}\n  sets:\n    - {name: admins, addresses: [198.18.0.1]}\n",
			`rules.list[0].src_set: "admin": no set named "admin"; define it under rules.sets in the config; did you mean "admins"?`},
		{"rules:\n  list:\n    - {chain: input, target: ACCEPT}\n", `no chain "input"; chains are case-sensitive: INPUT?`},
		{"rules:\n  list:\n    - {chain: INPUT, not: [target], target: ACCEPT}\n", `not: "target" cannot be negated`},
		{"rules:\n  list:\n    - {chain: INPUT, target: nowhere}\n", "unknown target"},
		{"rules:\n  sets:\n    - {name: s, addresses: [198.18.0.300]}\n", `rules.sets[0].addresses[0]: "198.18.0.300"`},
		{"rules:\n  policies: {input: REJECT}\n", "a policy is ACCEPT or DROP"},
	} {
		cfg, err := config.Load("c.yaml", []byte(base+tt.yaml))
		if err == nil {
			_, err = ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\nerror %v\nwant  %q", tt.yaml, err, tt.want)
		}
	}
}

// TestImportRoundTrip: iptables-save text → import → YAML → load → compile
// gives the same verdicts as compiling the text directly.
func TestImportRoundTrip(t *testing.T) {
	texts := []string{
		`*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT DROP [0:0]
:ssh - [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j ssh
-A INPUT -p icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 80,443,8000:8100 -j ACCEPT
-A INPUT ! -s 198.18.0.0/16 -j DROP
-A INPUT -p udp ! --dport 53 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -j LOG --log-prefix "syn: "
-A INPUT -i outside -p tcp --sport 1024:65535 --dport 25 -j DROP
-A ssh -s 198.18.54.0/24,198.18.0.1 -m comment --comment "admins" -j ACCEPT
-A ssh -p tcp -j REJECT --reject-with tcp-reset
-A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A OUTPUT ! -o inside -p udp --sport 53 -j ACCEPT
COMMIT
`,
	}
	b, _ := os.ReadFile("../../configs/tutorial.rules")
	texts = append(texts, string(b))
	r := rand.New(rand.NewPCG(5, 5))
	for i, text := range texts {
		rs, err := rules.ParseIptables("text", text)
		if err != nil {
			t.Fatal(err)
		}
		y, err := ruleset.Import(rs)
		if err != nil {
			t.Fatal(err)
		}
		cfgText := load(t, "rules:\n  iptables: |\n    "+strings.ReplaceAll(strings.TrimSpace(text), "\n", "\n    ")+"\n")
		cfgYAML, err := config.Load("imported.yaml", []byte(base+string(y)))
		if err != nil {
			t.Fatalf("text %d: the imported YAML does not load: %v\n%s", i, err, y)
		}
		fa, fb := compile(t, cfgText), compile(t, cfgYAML)
		for k := 0; k < 20000; k++ {
			p := &packet.Parsed{Kind: packet.IPv4, Proto: []uint8{6, 17, 1}[r.IntN(3)],
				Src: [16]byte{198, byte(18 + r.IntN(2)), byte(r.IntN(60)), byte(r.IntN(3))}, Dst: [16]byte{198, 18, 1, 1},
				SrcPort: uint16([]int{53, 1000, 30000, 22}[r.IntN(4)]), DstPort: uint16([]int{22, 25, 53, 80, 8050, 9000}[r.IntN(6)]),
				TCPFlags: uint8(r.IntN(256)), ICMPType: uint8(r.IntN(10))}
			st := uint8(1) << r.IntN(4)
			hook := filter.Hook(r.IntN(3))
			in, out := uint16(r.IntN(2)), uint16(r.IntN(2))
			a, b := fa.Run(filter.Ctx{}, p, st, hook, in, out), fb.Run(filter.Ctx{}, p, st, hook, in, out)
			if a.Verdict != b.Verdict || a.Rule != b.Rule {
				t.Fatalf("text %d: packet %v: iptables %v (rule %d), imported %v (rule %d)\n%s", i, p, a.Verdict, a.Rule, b.Verdict, b.Rule, y)
			}
		}
	}
}

func FuzzStructuredRules(f *testing.F) {
	f.Add([]byte("rules:\n  list:\n    - {chain: INPUT, proto: tcp, dport: \"22\", state: [NEW], target: ACCEPT}\n"))
	f.Add([]byte("rules:\n  sets: [{name: a, addresses: [198.18.0.0/15]}]\n  list: [{chain: FORWARD, src_set: a, not: [src_set], target: DROP}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := config.Load("fuzz.yaml", append([]byte(base), b...))
		if err != nil {
			return
		}
		_, _ = ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1)
	})
}

// TestMemoryFits: a plan larger than the machine is refused by check and
// run alike, with what to lower.
func TestMemoryFits(t *testing.T) {
	cfg := load(t, "conntrack: {capacity: 268435456}\nrules: {allow_empty: true}\n")
	m := ruleset.MemoryPlan(cfg, compile(t, cfg))
	if err := m.Fits(24 << 30); err == nil || !strings.Contains(err.Error(), "lower conntrack.capacity") {
		t.Errorf("a %d-byte plan on a 24 GB machine: %v", m.Total(), err)
	}
	if err := m.Fits(1 << 40); err != nil {
		t.Errorf("on a 1 TB machine: %v", err)
	}
	if ruleset.MachineMemory() <= 0 {
		t.Errorf("MachineMemory: %d", ruleset.MachineMemory())
	}
}

// TestFamiliesApart: with rules.iptables6 beside rules.iptables, each
// family has its own chains and policies (as iptables and ip6tables):
// the IPv4 policy does not apply to IPv6 and an IPv6 rule not to IPv4.
func TestFamiliesApart(t *testing.T) {
	cfg := load(t, `rules:
  iptables: |
    -P INPUT DROP
    -A INPUT -p tcp --dport 22 -j ACCEPT
  iptables6: |
    *filter
    :INPUT ACCEPT [0:0]
    -A INPUT -p tcp --dport 23 -j DROP
    -A INPUT -6 -p tcp --dport 24 -j DROP
    -A INPUT -4 -p tcp --dport 25 -j DROP
    COMMIT
`)
	f := compile(t, cfg)
	p6 := func(dport uint16) *packet.Parsed {
		p := &packet.Parsed{Kind: packet.IPv6, Proto: 6, DstPort: dport, SrcPort: 40000}
		p.Src = [16]byte{0x20, 0x01, 0, 2, 15: 1}
		p.Dst = [16]byte{0x20, 0x01, 0, 2, 15: 2}
		return p
	}
	for _, tt := range []struct {
		name string
		p    *packet.Parsed
		want filter.Verdict
	}{
		{"IPv4 ssh: the iptables rule", pkt("198.18.0.1", 6, 22), filter.Accept},
		{"IPv4 telnet: the iptables policy", pkt("198.18.0.1", 6, 23), filter.Drop},
		{"IPv6 ssh: the ip6tables policy", p6(22), filter.Accept},
		{"IPv6 telnet: the ip6tables rule", p6(23), filter.Drop},
		{"IPv6, -6 rule", p6(24), filter.Drop},
		{"IPv6, -4 rule skipped by ip6tables", p6(25), filter.Accept},
	} {
		if r := f.Run(filter.Ctx{}, tt.p, rules.StateNew, filter.HookInput, 0, 1); r.Verdict != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, r.Verdict, tt.want)
		}
	}
	rs := f.Ruleset
	if _, ok := rs.Chains["ip6/INPUT"]; !ok || rs.NumRules() != 3 {
		t.Errorf("merged chains %v, %d rules; want ip6/INPUT and 3 rules (the -4 one skipped)", rs.Order, rs.NumRules())
	}
	save := rs.Save()
	if !strings.Contains(save, "# IPv6 (ip6tables-save)\n*filter\n:INPUT ACCEPT [0:0]") || !strings.Contains(save, ":INPUT DROP [0:0]") {
		t.Errorf("save:\n%s", save)
	}
	// The IPv6 set alone is not enough: IPv4 would have no rules.
	if _, err := config.Load("c.yaml", []byte(base+"rules:\n  iptables6: \"-P INPUT DROP\"\n")); err == nil || !strings.Contains(err.Error(), "goes with rules.file or rules.iptables") {
		t.Errorf("rules.iptables6 alone: %v", err)
	}
}
