package rules_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/perf/rulegen"
)

// The parser differential: rules applied with the real iptables-restore in
// a throwaway network namespace, then printed with the real iptables-save,
// and the same rules through dpfw's parser and Save. For every rule, both
// accept it or both refuse it; for the rules both accept, the output is
// the same, line for line. Rules dpfw refuses on purpose (deliberate, in
// the README) are listed in deliberateRefusals and checked to be refused
// by dpfw with the reason given.

// kernelTools skips (or, in CI, fails) a test that needs root and
// Debian's iptables.
func kernelTools(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := exec.LookPath("iptables-restore"); err != nil {
		why = "iptables is not installed (make deps)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "iproute2 is not installed (make deps)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("kernel differential test cannot run in CI: %s", why)
	}
	t.Skipf("kernel differential test skipped: %s", why)
}

// netns is a throwaway network namespace for iptables.
type netns string

func newNetns(t *testing.T) netns {
	t.Helper()
	name := fmt.Sprintf("dpfw-ipt-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return netns(name)
}

func (n netns) run(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// header declares the chains every generated rule may use.
const diffHeader = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:u0 - [0:0]\n:u1 - [0:0]\n:u2 - [0:0]\n"

func diffFile(rl []string) string {
	return diffHeader + strings.Join(rl, "\n") + "\nCOMMIT\n"
}

var errorLine = regexp.MustCompile(`(?:Error occurred at line: |line )(\d+)`)

// iptablesAccepts reports, rule by rule, whether iptables-restore --test
// accepts it: whole chunks first, and on a failure the rule its error
// names (or, when it names none, each half of the chunk).
func (n netns) iptablesAccepts(t *testing.T, prog string, rl []string) []bool {
	ok := make([]bool, len(rl))
	var judge func(idx []int)
	judge = func(idx []int) {
		if len(idx) == 0 {
			return
		}
		lines := make([]string, len(idx))
		for i, j := range idx {
			lines[i] = rl[j]
		}
		// A real restore (not --test: the kernel refuses some rules
		// that --test passes, such as tcp-reset without -p tcp).
		out, err := n.run(diffFile(lines), prog)
		if err == nil {
			for _, j := range idx {
				ok[j] = true
			}
			return
		}
		if len(idx) == 1 {
			return
		}
		if m := errorLine.FindStringSubmatch(out); m != nil {
			l, _ := strconv.Atoi(m[1])
			bad := l - strings.Count(diffHeader, "\n") - 1
			if bad >= 0 && bad < len(idx) {
				rest := append(append([]int(nil), idx[:bad]...), idx[bad+1:]...)
				judge(rest)
				return
			}
		}
		judge(idx[:len(idx)/2])
		judge(idx[len(idx)/2:])
	}
	const chunk = 64
	for i := 0; i < len(rl); i += chunk {
		idx := make([]int, 0, chunk)
		for j := i; j < min(i+chunk, len(rl)); j++ {
			idx = append(idx, j)
		}
		judge(idx)
	}
	return ok
}

// dpfwAccepts parses one rule in the same context.
func dpfwAccepts(rule string, fam rules.Family) (*rules.Ruleset, error) {
	return rules.Parse("diff", diffFile([]string{rule}), rules.ParseOptions{Family: fam})
}

// compareWithIptables runs the differential for one family and returns
// the number of rules that agree.
func compareWithIptables(t *testing.T, n netns, fam rules.Family, rl []string) (agree int) {
	t.Helper()
	prog, save := "iptables-restore", "iptables-save"
	if fam == 6 {
		prog, save = "ip6tables-restore", "ip6tables-save"
	}
	kernel := n.iptablesAccepts(t, prog, rl)
	var both []string
	mismatches := 0
	for i, r := range rl {
		_, err := dpfwAccepts(r, fam)
		switch {
		case kernel[i] && err != nil:
			mismatches++
			if mismatches <= 20 {
				t.Errorf("iptables accepts, dpfw refuses:\n  %s\n  %v", r, err)
			}
		case !kernel[i] && err == nil:
			mismatches++
			if mismatches <= 20 {
				t.Errorf("dpfw accepts, iptables refuses:\n  %s", r)
			}
		case kernel[i]:
			both = append(both, r)
			agree++
		default:
			agree++
		}
	}
	// The rules both accept, printed by both.
	if out, err := n.run(diffFile(both), prog); err != nil {
		t.Fatalf("%s of the rules it accepted one by one: %v\n%s", prog, err, out)
	}
	out, err := n.run("", save, "-t", "filter")
	if err != nil {
		t.Fatalf("%s: %v\n%s", save, err, out)
	}
	var want []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A ") {
			want = append(want, l)
		}
	}
	rs, err := rules.Parse("diff", diffFile(both), rules.ParseOptions{Family: fam})
	if err != nil {
		t.Fatalf("dpfw refuses the rules it accepted one by one: %v", err)
	}
	var got []string
	for _, l := range strings.Split(rs.Save(), "\n") {
		if strings.HasPrefix(l, "-A ") {
			got = append(got, l)
		}
	}
	// iptables-save groups rules by chain in the order of the chain
	// lines; so does dpfw.
	if len(got) != len(want) {
		t.Errorf("dpfw rules save prints %d rules, iptables-save %d", len(got), len(want))
	}
	diffs := 0
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			diffs++
			if diffs <= 20 {
				t.Errorf("canonical form differs:\n  iptables-save:   %s\n  dpfw rules save: %s", want[i], got[i])
			}
		}
	}
	t.Logf("IPv%d: %d of %d rules: same acceptance; %d accepted by both, %d printed identically by iptables-save and dpfw rules save",
		fam, agree, len(rl), len(both), min(len(got), len(want))-diffs)
	return agree
}

// TestIptablesDifferential: generated rules and the hand-written edge
// cases, against the real iptables.
func TestIptablesDifferential(t *testing.T) {
	kernelTools(t)
	n := newNetns(t)
	gen := generateRules(rand.New(rand.NewPCG(2026, 12)), 5000)
	rl := append(append([]string(nil), edgeRules...), gen...)
	compareWithIptables(t, n, 4, rl)
	compareWithIptables(t, n, 6, append(append([]string(nil), edgeRules6...), generateRules6(rand.New(rand.NewPCG(2026, 6)), 600)...))
}

// TestDeliberateRefusals: what iptables accepts and dpfw refuses on
// purpose, each with its reason (the README lists them); where the
// kernel tools are, the real iptables-restore must accept each.
func TestDeliberateRefusals(t *testing.T) {
	for _, d := range deliberateRefusals {
		_, err := dpfwAccepts(d.rule, 4)
		if err == nil || !strings.Contains(err.Error(), d.reason) {
			t.Errorf("%s\n  dpfw: %v\n  want a refusal saying %q", d.rule, err, d.reason)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		return
	}
	rl := make([]string, len(deliberateRefusals))
	for i, d := range deliberateRefusals {
		rl[i] = d.rule
	}
	for i, ok := range newNetns(t).iptablesAccepts(t, "iptables-restore", rl) {
		if !ok {
			t.Errorf("iptables-restore refuses %s: it is no deliberate difference", rl[i])
		}
	}
}

// deliberateRefusals are rules iptables accepts that dpfw refuses, with
// the words of its reason.
var deliberateRefusals = []struct{ rule, reason string }{
	{"-A INPUT -f -j DROP", "decides on whole datagrams"},
	{"-A INPUT -s 10.0.0.0/255.0.255.0 -j ACCEPT", "non-contiguous mask"},
	{"-A INPUT -s localhost -j ACCEPT", "host names are not resolved"},
	{"-A INPUT -i eth+ -j ACCEPT", "interface wildcards"},
	{"-A INPUT -i \"eth 0\" -j ACCEPT", "in an interface name: no port can have it"},
	{"-A FORWARD -o a/b -j ACCEPT", "in an interface name: no port can have it"},
	{"-A FORWARD -o wg@0 -j ACCEPT", "in an interface name: no port can have it"},
	{"-A INPUT -p tcp -m multiport --ports 22,80 -j ACCEPT", "--ports is not supported"},
	{"-A INPUT -p tcp --dport 22 -m multiport --dports 80 -j ACCEPT", "in one rule are not supported"},
	{"-A INPUT -m state --state NEW -m state --state ESTABLISHED -j ACCEPT", "loaded twice"},
	{"-A INPUT -m state --state NEW -m conntrack --ctstate NEW -j ACCEPT", "in one rule are not supported"},
	{"-A INPUT -j NFLOG --nflog-group 1", "the NFLOG target is not supported"},
	{"-A INPUT -m recent --rcheck -j DROP", "the recent match is not supported"},
	{"-A INPUT -g u0", "--goto is not supported"},
	{"-A INPUT -p tcp --tcp-option 2 -j DROP", "--tcp-option is not supported"},
	{"-A INPUT ! -p tcp --dport 22 -j ACCEPT", "--dport needs -p tcp"},
	{"-A INPUT -p tcp", "counting rules without -j are not supported"},
	{"-A INPUT -p tcp --tcp-flags NONE SYN -j DROP", "a --tcp-flags mask of NONE tests no flag"},
	{"-A INPUT -p udp --dport 90:80 -j DROP", "invalid port range (min > max)"},
	{"-A INPUT -p udp --dport 65536 -j DROP", "invalid port: want 0-65535"},
	{"-A INPUT -p tcp ! --dport 0:65535 -j DROP", "matches no packet"},
}

// edgeRules are hand-written cases: each difference the fidelity issue
// found, and the corners of every module.
var edgeRules = []string{
	"-A INPUT -p tcp --tcp-flags ALL SYN -j ACCEPT",
	"-A INPUT -p tcp --tcp-flags ALL NONE -j DROP",
	"-A INPUT -p tcp --tcp-flags SYN,ACK,ECE SYN -j DROP",
	"-A INPUT -p tcp --syn -j ACCEPT",
	"-A INPUT -p tcp ! --syn -m state --state NEW -j DROP",
	"-A INPUT -p tcp --syn --tcp-flags SYN SYN -j ACCEPT",
	"-A INPUT -s 198.18.0.1 -s 198.18.0.2 -j ACCEPT",
	"-A INPUT -p tcp --dport 22 --dport 80 -j ACCEPT",
	"-A INPUT -p tcp -m udp --dport 69 -j ACCEPT",
	"-A INPUT -p udp -m tcp --dport 69 -j ACCEPT",
	"-A INPUT -m tcp --dport 22 -p tcp -j ACCEPT",
	"-A INPUT -p tcp --dport=22 -j ACCEPT",
	"-A INPUT -s 198.18.0.0/255.255.0.0 -j ACCEPT",
	"-A INPUT -s 198.18.0.5/24 -j ACCEPT",
	"-A INPUT -s 0.0.0.0/0 -j ACCEPT",
	"-A INPUT -d 198.18.0.1,198.18.0.2 -s 198.18.1.0/24,198.18.2.1 -j ACCEPT",
	"-A INPUT -p icmp --icmp-type any -j ACCEPT",
	"-A INPUT -p icmp --icmp-type host-prohibited -j ACCEPT",
	"-A INPUT -p icmp --icmp-type ttl-exceeded -j ACCEPT",
	"-A INPUT -p icmp --icmp-type echo -j ACCEPT",
	"-A INPUT -p icmp --icmp-type echo-req -j ACCEPT",
	"-A INPUT -p icmp --icmp-type Echo-Request -j ACCEPT",
	"-A INPUT -p icmp --icmp-type 255 -j ACCEPT",
	"-A INPUT -p icmp --icmp-type 3/256 -j ACCEPT",
	"-A INPUT -p icmp --icmp-type 3/4 -j ACCEPT",
	"-A INPUT -p icmp ! --icmp-type 8 -j ACCEPT",
	"-A INPUT -p icmp --icmpv6-type 1 -j ACCEPT",
	"-A INPUT -p igmp -j ACCEPT",
	"-A INPUT -p 2 -j ACCEPT",
	"-A INPUT -p gre -j ACCEPT",
	"-A INPUT -p 253 -j ACCEPT",
	"-A INPUT -p all -j ACCEPT",
	"-A INPUT -p 0 -j ACCEPT",
	"-A INPUT -p TCP -j ACCEPT",
	"-A INPUT ! -p tcp -j ACCEPT",
	"-A INPUT -p bogus -j ACCEPT",
	"-A INPUT -p 256 -j ACCEPT",
	"-A INPUT -p udp --dport imaps -j ACCEPT",
	"-A INPUT -p tcp --dport postgresql -j ACCEPT",
	"-A INPUT -p tcp --sport ssh:http -j ACCEPT",
	"-A INPUT -p tcp --dport :1023 -j ACCEPT",
	"-A INPUT -p tcp --dport 1024: -j ACCEPT",
	"-A INPUT -p tcp --dport 80:80 -j ACCEPT",
	"-A INPUT -p tcp --dport 90:80 -j ACCEPT",
	"-A INPUT -p tcp --dport 65536 -j ACCEPT",
	"-A INPUT -p tcp --dport nosuchservice -j ACCEPT",
	"-A INPUT -p tcp ! --dport 22 -j DROP",
	"-A INPUT -p sctp --dport 5 -j ACCEPT",
	"-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT",
	"-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT",
	"-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:20 -j ACCEPT",
	"-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:20 -j ACCEPT",
	"-A INPUT -p tcp -m multiport --sports 1 --dports 2 -j ACCEPT",
	"-A INPUT -p tcp -m multiport ! --dports 80,443 -j ACCEPT",
	"-A INPUT -m multiport --dports 80 -j ACCEPT",
	"-A INPUT -p tcp -m multiport -j ACCEPT",
	"-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT",
	"-A INPUT -m state --state new,untracked -j ACCEPT",
	"-A INPUT -m state ! --state NEW -j ACCEPT",
	"-A INPUT -m conntrack --ctstate INVALID,NEW -j DROP",
	"-A INPUT -m conntrack --ctstate BOGUS -j DROP",
	"-A INPUT -m state -j ACCEPT",
	"-A INPUT -m comment --comment \"say \\\"hi\\\" now\" -j ACCEPT",
	"-A INPUT -m comment --comment \"a\\\\b\" -j ACCEPT",
	"-A INPUT -m comment --comment plain -j ACCEPT",
	"-A INPUT -m comment --comment \"two words\" -j ACCEPT",
	"-A INPUT -m comment --comment \"it's\" -j ACCEPT",
	"-A INPUT -m comment --comment " + strings.Repeat("x", 255) + " -j ACCEPT",
	"-A INPUT -m comment --comment " + strings.Repeat("x", 256) + " -j ACCEPT",
	"-A INPUT -m limit --limit 5/min --limit-burst 10 -j ACCEPT",
	"-A INPUT -m limit -j ACCEPT",
	"-A INPUT -m limit --limit 10/second --limit-burst 5 -j ACCEPT",
	"-A INPUT -m limit --limit 100 -j ACCEPT",
	"-A INPUT -m limit --limit 7/minute -j ACCEPT",
	"-A INPUT -m limit --limit 1/day -j ACCEPT",
	"-A INPUT -m limit --limit 3/h -j ACCEPT",
	"-A INPUT -j REJECT",
	"-A INPUT -j REJECT --reject-with icmp-host-prohibited",
	"-A INPUT -j REJECT --reject-with host-prohib",
	"-A INPUT -j REJECT --reject-with tcp-reset",
	"-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
	"-A INPUT -p tcp -j REJECT --reject-with tcp-rst",
	"-A INPUT -j REJECT --reject-with icmp6-adm-prohibited",
	"-A INPUT -j REJECT --reject-with icmp-admin-prohibited",
	"-A INPUT -j REJECT --reject-with bogus",
	"-A INPUT --reject-with icmp-host-prohibited -j REJECT",
	"-A INPUT -j LOG",
	"-A INPUT -j LOG --log-level 4",
	"-A INPUT -j LOG --log-level warning",
	"-A INPUT -j LOG --log-level debug --log-prefix \"a b\"",
	`-A INPUT -j LOG --log-prefix "it\'s \"q\" \\ \x"`, // in quotes a backslash escapes any character
	"-A INPUT -j LOG --log-level 8",
	"-A INPUT -j LOG --log-level bogus",
	"-A INPUT -j LOG --log-prefix \"" + strings.Repeat("p", 29) + "\"",
	"-A INPUT -j LOG --log-prefix \"" + strings.Repeat("p", 30) + "\"",
	"-A INPUT -j LOG --log-tcp-sequence --log-ip-options --log-uid",
	"-A INPUT -j ACCEPT -j DROP",
	"-A INPUT -j u0",
	"-A u0 -j RETURN",
	"-A INPUT -i lo -j ACCEPT",
	"-A FORWARD -p tcp -o eth1 -i lo -d 198.18.0.4 -s 198.18.0.5 -j ACCEPT",
	"-A INPUT ! -i lo ! -d 198.18.0.4 -j ACCEPT",
	"-A INPUT -i abcdefghijklmnop -j ACCEPT",
	"-A INPUT -p tcp -m state --state NEW --dport 22 -j ACCEPT",
	"-A INPUT -m comment --comment x -p udp --sport 53 -m state --state ESTABLISHED -j ACCEPT",
	"-A INPUT ! ! -p tcp -j ACCEPT",
	"-A INPUT -m nosuchmodule -j ACCEPT",
}

// edgeRules6 are ip6tables cases.
var edgeRules6 = []string{
	"-A INPUT -s 2001:2::1 -p tcp --dport 22 -j ACCEPT",
	"-A INPUT -p icmpv6 -j ACCEPT",
	"-A INPUT -p ipv6-icmp --icmpv6-type 1/3 -j ACCEPT",
	"-A INPUT -p icmpv6 --icmpv6-type beyond-scope -j ACCEPT",
	"-A INPUT -p icmpv6 --icmpv6-type neighbor-solicitation -j ACCEPT",
	"-A INPUT -p icmpv6 --icmpv6-type any -j ACCEPT",
	"-A INPUT -p icmpv6 --icmp-type 8 -j ACCEPT",
	"-A INPUT -j REJECT",
	"-A INPUT -j REJECT --reject-with icmp-port-unreachable",
	"-A INPUT -s 2001:2::/48 -j REJECT --reject-with adm-prohibited",
	"-A INPUT -j REJECT --reject-with icmp6-no-route",
	"-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
	"-A INPUT -m state --state NEW -j ACCEPT",
	"-A INPUT -s 198.18.0.1 -j ACCEPT",
	"-A INPUT -s 2001:2::5/64 -d 2001:2:0:1::1,2001:2:0:2::/64 -j ACCEPT",
	"-A INPUT -s ::/0 -j ACCEPT",
	"-A INPUT -p udp --sport 53 -j ACCEPT",
}

// generateRules makes n random rules over dpfw's supported grammar, with
// a share of mistakes iptables refuses (so that refusals are compared
// too).
func generateRules(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = generateRule(r, 4)
	}
	return out
}

func generateRules6(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = generateRule(r, 6)
	}
	return out
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func generateRule(r *rand.Rand, fam int) string {
	var b strings.Builder
	chain := pick(r, "INPUT", "FORWARD", "OUTPUT", "INPUT", "u0", "u1")
	b.WriteString("-A " + chain)
	neg := func() string {
		if r.IntN(6) == 0 {
			return "! "
		}
		return ""
	}
	addr := func() string {
		if fam == 6 {
			a := fmt.Sprintf("2001:2:%x::%x", r.IntN(16), r.IntN(65536))
			if r.IntN(2) == 0 {
				a += fmt.Sprintf("/%d", 48+r.IntN(81))
			}
			return a
		}
		a := fmt.Sprintf("198.%d.%d.%d", 18+r.IntN(2), r.IntN(256), r.IntN(256))
		switch r.IntN(5) {
		case 0, 1:
			a += fmt.Sprintf("/%d", r.IntN(33))
		case 2:
			a += "/255.255." + pick(r, "255.0", "0.0", "255.128", "255.255")
		}
		return a
	}
	var mods []func()
	proto := pick(r, "", "", "tcp", "tcp", "udp", "icmp", "sctp", "igmp", "47", "all", "TCP")
	if fam == 6 && proto == "icmp" {
		proto = "icmpv6"
	}
	pneg := neg()
	dportUsed := false
	if proto != "" && r.IntN(10) == 0 {
		// the protocol's match before -p, as iptables allows
		if m := map[string]string{"tcp": "tcp", "udp": "udp"}[proto]; m != "" {
			fmt.Fprintf(&b, " -m %s --dport %d", m, r.IntN(65536))
			pneg, dportUsed = "", true
		}
	}
	if r.IntN(3) == 0 {
		fmt.Fprintf(&b, " %s-s %s", neg(), addr())
		if r.IntN(8) == 0 {
			b.WriteString("," + addr())
		}
	}
	if r.IntN(3) == 0 {
		fmt.Fprintf(&b, " %s-d %s", neg(), addr())
	}
	if r.IntN(5) == 0 {
		fmt.Fprintf(&b, " %s-i %s", neg(), pick(r, "eth0", "lo", "a", "veth-x"))
	}
	if r.IntN(6) == 0 && chain != "INPUT" {
		fmt.Fprintf(&b, " %s-o %s", neg(), pick(r, "eth1", "b"))
	}
	if proto != "" {
		fmt.Fprintf(&b, " %s-p %s", pneg, proto)
	}
	lproto := strings.ToLower(proto)
	port := func() string {
		switch r.IntN(8) {
		case 0:
			return pick(r, "ssh", "http", "domain", "https", "imaps", "ntp")
		case 1:
			lo := r.IntN(65536)
			return fmt.Sprintf("%d:%d", lo, lo+r.IntN(65536-lo))
		case 2:
			return fmt.Sprintf(":%d", r.IntN(65536))
		case 3:
			return fmt.Sprintf("%d:", r.IntN(65536))
		case 4:
			// Mistakes iptables refuses (for udp, iptables-nft wraps
			// 65536 to 0 and keeps reversed ranges, and dpfw refuses
			// both: deliberate, so not generated there).
			if r.IntN(10) == 0 && lproto != "udp" {
				return pick(r, "65536", "90:80", "nosuch")
			}
		}
		return strconv.Itoa(r.IntN(65536))
	}
	if pneg == "" && (lproto == "tcp" || lproto == "udp" || lproto == "sctp") {
		sportUsed := r.IntN(2) == 0
		if sportUsed {
			mods = append(mods, func() { fmt.Fprintf(&b, " %s--sport %s", neg(), port()) })
		}
		if dportUsed {
		} else if r.IntN(2) == 0 {
			mods = append(mods, func() {
				if r.IntN(10) == 0 {
					fmt.Fprintf(&b, " --dport=%s", port())
				} else {
					fmt.Fprintf(&b, " %s--dport %s", neg(), port())
				}
			})
		} else if r.IntN(3) == 0 {
			mods = append(mods, func() {
				k := 1 + r.IntN(9)
				ps := make([]string, k)
				for i := range ps {
					ps[i] = port()
				}
				opt := pick(r, "dports", "sports", "destination-ports")
				if sportUsed {
					opt = pick(r, "dports", "destination-ports")
				}
				fmt.Fprintf(&b, " -m multiport %s--%s %s", neg(), opt, strings.Join(ps, ","))
			})
		}
		if lproto == "tcp" && r.IntN(3) == 0 {
			mods = append(mods, func() {
				flags := func() string {
					var fs []string
					for _, f := range []string{"SYN", "ACK", "FIN", "RST", "URG", "PSH"} {
						if r.IntN(3) == 0 {
							fs = append(fs, f)
						}
					}
					if len(fs) == 0 || r.IntN(8) == 0 {
						return "ALL"
					}
					return strings.Join(fs, ",")
				}
				if r.IntN(3) == 0 {
					fmt.Fprintf(&b, " %s--syn", neg())
				} else {
					comp := flags()
					if r.IntN(6) == 0 {
						comp = "NONE"
					}
					fmt.Fprintf(&b, " %s--tcp-flags %s %s", neg(), flags(), comp)
				}
			})
		}
	}
	if pneg == "" && (lproto == "icmp" || lproto == "icmpv6") && r.IntN(3) != 0 {
		mods = append(mods, func() {
			opt, names := "--icmp-type", []string{"echo-request", "echo-reply", "destination-unreachable", "port-unreachable",
				"time-exceeded", "ttl-exceeded", "host-prohibited", "redirect", "parameter-problem", "any", "ping", "pong", "fragmentation-needed"}
			if fam == 6 {
				opt, names = "--icmpv6-type", []string{"echo-request", "echo-reply", "destination-unreachable", "no-route",
					"packet-too-big", "time-exceeded", "neighbour-solicitation", "neighbor-advertisement", "router-advertisement", "beyond-scope", "redirect"}
			}
			v := pick(r, names...)
			switch r.IntN(4) {
			case 0:
				v = strconv.Itoa(r.IntN(256))
			case 1:
				v = fmt.Sprintf("%d/%d", r.IntN(256), r.IntN(256))
			}
			fmt.Fprintf(&b, " %s%s %s", neg(), opt, v)
		})
	}
	if r.IntN(3) == 0 {
		mods = append(mods, func() {
			var ss []string
			for _, s := range []string{"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"} {
				if r.IntN(3) == 0 {
					ss = append(ss, s)
				}
			}
			if len(ss) == 0 {
				ss = []string{"NEW"}
			}
			if r.IntN(2) == 0 {
				fmt.Fprintf(&b, " -m state %s--state %s", neg(), strings.Join(ss, ","))
			} else {
				fmt.Fprintf(&b, " -m conntrack %s--ctstate %s", neg(), strings.Join(ss, ","))
			}
		})
	}
	if r.IntN(6) == 0 {
		mods = append(mods, func() {
			fmt.Fprintf(&b, " -m limit --limit %d/%s", 1+r.IntN(200), pick(r, "sec", "second", "minute", "min", "hour", "day", "s", "m", "h", "d"))
			if r.IntN(2) == 0 {
				fmt.Fprintf(&b, " --limit-burst %d", 1+r.IntN(100))
			}
		})
	}
	if r.IntN(5) == 0 {
		mods = append(mods, func() {
			c := pick(r, "plain", "two words", `say "hi"`, `back\slash`, "tab-free_chars-123", "x")
			c = strings.ReplaceAll(strings.ReplaceAll(c, `\`, `\\`), `"`, `\"`)
			fmt.Fprintf(&b, ` -m comment --comment "%s"`, c)
		})
	}
	r.Shuffle(len(mods), func(i, j int) { mods[i], mods[j] = mods[j], mods[i] })
	for _, m := range mods {
		m()
	}
	target := pick(r, "ACCEPT", "ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "u2")
	if chain == "u0" || chain == "u1" {
		if target == "u2" && r.IntN(2) == 0 {
			target = "DROP"
		}
	}
	b.WriteString(" -j " + target)
	switch target {
	case "REJECT":
		if r.IntN(2) == 0 {
			ts := []string{"icmp-port-unreachable", "icmp-host-prohibited", "icmp-net-unreachable", "icmp-admin-prohibited", "port-unreach", "tcp-reset"}
			if fam == 6 {
				ts = []string{"icmp6-port-unreachable", "icmp6-adm-prohibited", "icmp6-no-route", "addr-unreach", "tcp-reset"}
			}
			fmt.Fprintf(&b, " --reject-with %s", pick(r, ts...))
		}
	case "LOG":
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, ` --log-prefix "%s"`, pick(r, "dpfw: ", "drop ", "x", "in-"))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, " --log-level %s", pick(r, "debug", "info", "4", "7", "0", "warning", "err", "notice"))
		}
	}
	return b.String()
}

// TestEditsLikeIptables makes the same edits with the real iptables (-I,
// -A, -R, -D by number and by rule, -C) in a throwaway namespace and with
// rules.ApplyEdit: after each, iptables-save and dpfw print the same
// rules, and -C answers alike (found, or iptables' exit 1 and dpfw's
// ErrNoMatch).
func TestEditsLikeIptables(t *testing.T) {
	kernelTools(t)
	n := newNetns(t)
	if out, err := n.run(diffFile(nil), "iptables-restore"); err != nil {
		t.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	rs, err := rules.Parse("edits", diffFile(nil), rules.ParseOptions{Family: 4})
	if err != nil {
		t.Fatal(err)
	}
	edits := []struct {
		flag  string
		e     rules.Edit
		found bool // for -C
	}{
		{"-A", rules.Edit{Op: rules.Append, Chain: "INPUT", Spec: "-p tcp --dport 22 -j ACCEPT"}, false},
		{"-I", rules.Edit{Op: rules.Insert, Chain: "INPUT", Spec: "-s 198.18.0.0/15 -m state --state NEW -j u0"}, false},
		{"-I", rules.Edit{Op: rules.Insert, Chain: "INPUT", Num: 2, Spec: "-p udp --dport 53 -j ACCEPT"}, false},
		{"-A", rules.Edit{Op: rules.Append, Chain: "u0", Spec: "-p icmp --icmp-type echo-request -j RETURN"}, false},
		{"-R", rules.Edit{Op: rules.Replace, Chain: "INPUT", Num: 3, Spec: "-p tcp --dport 2222 -j DROP"}, false},
		{"-C", rules.Edit{Op: rules.Check, Chain: "INPUT", Spec: "-p udp --dport 53 -j ACCEPT"}, true},
		{"-C", rules.Edit{Op: rules.Check, Chain: "INPUT", Spec: "-p udp --dport 54 -j ACCEPT"}, false},
		{"-D", rules.Edit{Op: rules.Delete, Chain: "INPUT", Spec: "-p udp --dport 53 -j ACCEPT"}, false},
		{"-D", rules.Edit{Op: rules.Delete, Chain: "INPUT", Num: 1}, false},
		{"-A", rules.Edit{Op: rules.Append, Chain: "INPUT", Spec: "-m limit --limit 3/min -j LOG --log-prefix \"in: \""}, false},
	}
	for _, ed := range edits {
		args := []string{ed.flag, ed.e.Chain}
		if ed.e.Num > 0 {
			args = append(args, fmt.Sprint(ed.e.Num))
		}
		if ed.e.Spec != "" {
			words, err := splitWords(ed.e.Spec)
			if err != nil {
				t.Fatal(err)
			}
			args = append(args, words...)
		}
		out, kerr := n.run("", "iptables", args...)
		next, derr := rules.ApplyEdit(rs, ed.e)
		if ed.flag == "-C" {
			if (kerr == nil) != ed.found || (derr == nil) != ed.found || ed.found == false && !errors.Is(derr, rules.ErrNoMatch) {
				t.Errorf("iptables %v: %v %s; dpfw: %v; want found %v", args, kerr, out, derr, ed.found)
			}
			continue
		}
		if kerr != nil || derr != nil {
			t.Fatalf("iptables %v: %v %s; dpfw: %v", args, kerr, out, derr)
		}
		rs = next
		save, err := n.run("", "iptables-save", "-t", "filter")
		if err != nil {
			t.Fatal(err)
		}
		if k, d := ruleLines(save), ruleLines(rs.Save()); k != d {
			t.Errorf("after iptables %v:\niptables-save:\n%s\ndpfw rules save:\n%s", args, k, d)
		}
	}
	if got := strings.Count(ruleLines(rs.Save()), "-A "); got != 3 {
		t.Errorf("%d rules after the edits; want 3:\n%s", got, rs.Save())
	}
}

// ruleLines keeps a save file's -A lines.
func ruleLines(save string) string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// splitWords splits a rule as a shell would (double quotes only).
func splitWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQ {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// TestLargeRuleSetsLikeIptables: the generated 100,000-rule files of the
// scale benchmarks load into the real iptables, and dpfw reads them as
// iptables does: iptables-save prints the same rules, chain by chain, as
// dpfw's save of its parse.
func TestLargeRuleSetsLikeIptables(t *testing.T) {
	kernelTools(t)
	n := newNetns(t)
	for _, tc := range []struct{ name, text string }{
		{"flat", rulegen.Flat(100_000)}, {"tenants", rulegen.Tenants(100_000, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := n.run(tc.text, "iptables-restore"); err != nil {
				t.Fatalf("iptables-restore: %v\n%.2000s", err, out)
			}
			save, err := n.run("", "iptables-save", "-t", "filter")
			if err != nil {
				t.Fatal(err)
			}
			rs, err := rules.Parse(tc.name, tc.text, rules.ParseOptions{Family: 4})
			if err != nil {
				t.Fatal(err)
			}
			if rs.NumRules() < 100_000 {
				t.Fatalf("%d rules parsed", rs.NumRules())
			}
			k, d := byChain(save), byChain(rs.Save())
			if len(k) == 0 || len(k) != len(d) {
				t.Fatalf("iptables has %d chains with rules, dpfw %d", len(k), len(d))
			}
			for chain, kl := range k {
				if dl := d[chain]; kl != dl {
					t.Fatalf("chain %s differs:\niptables-save: %.600s\ndpfw save:     %.600s", chain, kl, dl)
				}
			}
		})
	}
}

// byChain groups a save file's -A lines by chain, in order.
func byChain(save string) map[string]string {
	bs := map[string]*strings.Builder{}
	for _, l := range strings.Split(save, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "-A" {
			if bs[f[1]] == nil {
				bs[f[1]] = &strings.Builder{}
			}
			bs[f[1]].WriteString(l + "\n")
		}
	}
	out := map[string]string{}
	for c, b := range bs {
		out[c] = b.String()
	}
	return out
}

// TestSetsLikeIptables: -m set with the real ipset and iptables in a
// namespace. iptables keeps -s beside --match-set and prints a negated set
// as dpfw does; a set of the other family is refused by both ip6tables and
// iptables, and by dpfw.
func TestSetsLikeIptables(t *testing.T) {
	kernelTools(t)
	if _, err := exec.LookPath("ipset"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ipset is not installed (make deps)")
		}
		t.Skip("ipset is not installed (make deps)")
	}
	n := newNetns(t)
	for _, c := range [][]string{
		{"create", "v4", "hash:net", "family", "inet"}, {"add", "v4", "198.18.0.0/16"},
		{"create", "v6", "hash:net", "family", "inet6"}, {"add", "v6", "2001:2::/48"},
	} {
		if out, err := n.run("", "ipset", c...); err != nil {
			t.Fatalf("ipset %v: %v\n%s", c, err, out)
		}
	}
	sets := map[string][]netip.Prefix{"v4": {netip.MustParsePrefix("198.18.0.0/16")}, "v6": {netip.MustParsePrefix("2001:2::/48")}}
	specs := []string{"-A INPUT -s 198.18.0.1 -m set --match-set v4 src -j DROP", "-A INPUT -m set ! --match-set v4 dst -j ACCEPT"}
	for _, spec := range specs {
		words, _ := splitWords(spec)
		if out, err := n.run("", "iptables", words...); err != nil {
			t.Fatalf("iptables %s: %v\n%s", spec, err, out)
		}
	}
	save, err := n.run("", "iptables-save", "-t", "filter")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Parse("sets", strings.Join(specs, "\n")+"\n", rules.ParseOptions{Family: 4, Sets: sets})
	if err != nil {
		t.Fatal(err)
	}
	if k, d := ruleLines(save), ruleLines(rs.Save()); k != d {
		t.Errorf("iptables-save:\n%s\ndpfw save:\n%s", k, d)
	}
	for _, tc := range []struct {
		prog, set string
		fam       rules.Family
	}{{"ip6tables", "v4", 6}, {"iptables", "v6", 4}} {
		out, kerr := n.run("", tc.prog, "-A", "INPUT", "-m", "set", "--match-set", tc.set, "src", "-j", "DROP")
		_, derr := rules.Parse("f", "-A INPUT -m set --match-set "+tc.set+" src -j DROP\n", rules.ParseOptions{Family: tc.fam, Sets: sets})
		if kerr == nil || !strings.Contains(out, "is not applicable") || derr == nil || !strings.Contains(derr.Error(), "could never match") {
			t.Errorf("%s with set %s: kernel tools %v %q; dpfw %v", tc.prog, tc.set, kerr, out, derr)
		}
	}
}
