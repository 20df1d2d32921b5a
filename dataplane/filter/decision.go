package filter

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/dataplane/reject"
	"github.com/dpfw/dpfw/dataplane/rules"
)

// A decision id names what decided a packet's verdict: rule ids
// 0 … len(Rules)−1, then len(Rules)+c for the policy of chain c. Connection
// entries cache decision ids (16 bits), so a rule set holds at most
// rules.MaxDecisions rules plus chains.

// MaxDecisions bounds a rule set's decision ids (rules.MaxDecisions).
const MaxDecisions = rules.MaxDecisions

// Decision returns the decision id of a Run result.
func (f *Filter) Decision(r Result) uint32 {
	if r.Rule >= 0 {
		return uint32(r.Rule)
	}
	return uint32(len(f.Rules) + int(r.Chain))
}

// DecisionVerdict returns the verdict a decision stands for.
func (f *Filter) DecisionVerdict(d uint32) Verdict {
	if int(d) < len(f.Rules) {
		return f.ruleVerdict[d]
	}
	return f.chains[int(d)-len(f.Rules)].policy
}

// NumDecisions returns the number of decision ids.
func (f *Filter) NumDecisions() int { return len(f.Rules) + len(f.chains) }

// DecisionName describes a decision for humans: "INPUT#2" or "INPUT policy".
func (f *Filter) DecisionName(d uint32) string {
	if int(d) < len(f.Rules) {
		ch := f.Rules[d].Chain
		return ch + "#" + itoa(int(d)-f.chains[f.ChainOf[d]].first+1)
	}
	return f.chains[int(d)-len(f.Rules)].name + " policy"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// ChainNames returns the compiled chains' names, by chain index.
func (f *Filter) ChainNames() []string {
	out := make([]string, len(f.chains))
	for i := range f.chains {
		out[i] = f.chains[i].name
	}
	return out
}

// Counter counts packets and bytes of one decision for one worker. The
// owning worker adds; anyone reads.
type Counter struct {
	Packets, Bytes atomic.Uint64
}

// FlagSensitive reports whether some rule matches TCP flags, so a TCP
// packet's verdict may differ from the previous packet's in the same state
// and direction: such verdicts are not cached per connection.
func (f *Filter) FlagSensitive() bool { return f.flagSensitive }

// UsesState reports whether some rule matches a connection state. If none
// does, tracking cannot change a verdict, and the data plane skips it.
func (f *Filter) UsesState() bool { return f.usesState }

// AcceptsAll reports whether the rule set accepts every packet: no rules and
// ACCEPT policies everywhere. The data plane then skips classification and
// counts packets against the FORWARD policy.
func (f *Filter) AcceptsAll() bool { return f.acceptsAll }

// ForwardPolicyDecision is the decision id of the FORWARD chain's policy
// (of the IPv6 rule set's FORWARD chain for v6, in a merged rule set).
func (f *Filter) ForwardPolicyDecision(v6 bool) uint32 {
	i := 0
	if v6 {
		i = 1
	}
	return uint32(len(f.Rules) + int(f.hooks[i][HookForward]))
}

// RejectKind returns how a REJECT decision answers (its --reject-with).
func (f *Filter) RejectKind(d uint32) reject.Kind {
	if int(d) < len(f.rejectKind) {
		return f.rejectKind[d]
	}
	return reject.PortUnreachable
}
