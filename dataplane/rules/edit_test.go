package rules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/rules"
)

func chainText(rs *rules.Ruleset, chain string) string {
	var out []string
	for i := range rs.Chains[chain].Rules {
		out = append(out, rs.Chains[chain].Rules[i].Save())
	}
	return strings.Join(out, "\n")
}

// Insert, append, replace, delete (by number and by spec) and check, as
// iptables -I, -A, -R, -D and -C do them; bad edits are refused with the
// rule's column and the fix, and leave the rule set as it was.
func TestApplyEdit(t *testing.T) {
	rs, err := rules.ParseIptables("t", "-P INPUT DROP\n-N web\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p tcp --dport 80 -j web\n-A web -j ACCEPT\n")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		e    rules.Edit
		want string
	}{
		{rules.Edit{Op: rules.Insert, Chain: "INPUT", Spec: "-p tcp --dport 22 -j ACCEPT"},
			"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web"},
		{rules.Edit{Op: rules.Insert, Chain: "INPUT", Num: 3, Spec: "-p udp --dport 53 -j ACCEPT"},
			"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web"},
		{rules.Edit{Op: rules.Replace, Chain: "INPUT", Num: 1, Spec: "-p tcp --dport 2222 -j ACCEPT"},
			"-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web"},
		{rules.Edit{Op: rules.Delete, Chain: "INPUT", Spec: "-p udp --dport 53 -j ACCEPT"},
			"-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web"},
		{rules.Edit{Op: rules.Delete, Chain: "INPUT", Num: 1},
			"-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web"},
		{rules.Edit{Op: rules.Append, Chain: "INPUT", Spec: "-j DROP"},
			"-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j web\n-A INPUT -j DROP"},
	}
	for _, st := range steps {
		next, err := rules.ApplyEdit(rs, st.e)
		if err != nil {
			t.Fatalf("%v: %v", st.e, err)
		}
		if got := chainText(next, "INPUT"); got != st.want {
			t.Fatalf("%v:\n%s\nwant\n%s", st.e, got, st.want)
		}
		if chainText(next, "web") != "-A web -j ACCEPT" || next.Chains["INPUT"].Policy != "DROP" {
			t.Fatalf("%v changed another chain or the policy", st.e)
		}
		rs = next
	}
	if _, err := rules.ApplyEdit(rs, rules.Edit{Op: rules.Check, Chain: "INPUT", Spec: "-p tcp --dport 80 -j web"}); err != nil {
		t.Errorf("check of an existing rule: %v", err)
	}
	if _, err := rules.ApplyEdit(rs, rules.Edit{Op: rules.Check, Chain: "INPUT", Spec: "-p tcp --dport 81 -j web"}); !errors.Is(err, rules.ErrNoMatch) {
		t.Errorf("check of a missing rule: %v", err)
	}
	for _, tt := range []struct {
		e    rules.Edit
		want string
	}{
		{rules.Edit{Op: rules.Append, Chain: "INPUT", Spec: "-p tcp --dprot 22 -j ACCEPT"}, `rule column 8: "--dprot": unknown option`},
		{rules.Edit{Op: rules.Append, Chain: "INPUT", Spec: "-j nowhere"}, "nowhere"},
		{rules.Edit{Op: rules.Append, Chain: "web", Spec: "-j web"}, "loop"},
		{rules.Edit{Op: rules.Append, Chain: "OUTPT", Spec: "-j ACCEPT"}, `chain "OUTPT": no such chain`},
		{rules.Edit{Op: rules.Delete, Chain: "INPUT", Num: 9}, "index of the rule out of range: want 1 to 3"},
		{rules.Edit{Op: rules.Replace, Chain: "INPUT", Num: 0, Spec: "-j ACCEPT"}, "out of range"},
		{rules.Edit{Op: rules.Delete, Chain: "INPUT", Spec: "-j REJECT"}, "does a matching rule exist"},
	} {
		if _, err := rules.ApplyEdit(rs, tt.e); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want %q", tt.e, err, tt.want)
		}
	}
}

// FuzzApplyEdit: any rule text either is refused with an error or, once
// inserted, is found by a check and deleted by its own text, which gives
// back the rule set it started from; nothing panics.
func FuzzApplyEdit(f *testing.F) {
	for _, s := range []string{"-p tcp --dport 22 -j ACCEPT", "-s 198.18.0.0/15 -m state --state NEW -j web",
		"-m limit --limit 5/s -j LOG --log-prefix \"x \"", "-p icmp --icmp-type echo-request -j DROP", "-j", "--dport", "-p udp ! --sport 53 -j RETURN"} {
		f.Add(s, 1)
	}
	base, err := rules.ParseIptables("t", "-P INPUT DROP\n-N web\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n-A web -j ACCEPT\n")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec string, num int) {
		num = num % 4
		if num < 0 {
			num = -num
		}
		next, err := rules.ApplyEdit(base, rules.Edit{Op: rules.Insert, Chain: "INPUT", Num: num, Spec: spec})
		if err != nil {
			return
		}
		if _, err := rules.ApplyEdit(next, rules.Edit{Op: rules.Check, Chain: "INPUT", Spec: spec}); err != nil {
			t.Fatalf("inserted %q, then check: %v", spec, err)
		}
		back, err := rules.ApplyEdit(next, rules.Edit{Op: rules.Delete, Chain: "INPUT", Spec: spec})
		if err != nil {
			t.Fatalf("inserted %q, then delete: %v", spec, err)
		}
		if back.Save() != base.Save() && num <= 1 {
			t.Fatalf("insert then delete of %q:\n%s\nwant\n%s", spec, back.Save(), base.Save())
		}
	})
}
