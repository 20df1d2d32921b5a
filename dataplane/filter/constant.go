package filter

import (
	"math/bits"

	"github.com/dpfw/dpfw/dataplane/rules"
)

// A built-in chain whose first rule that can match packets of a state (and
// family) is a verdict on the state alone, as "-m state --state
// ESTABLISHED,RELATED -j ACCEPT" usually opens a stateful rule set,
// decides every such packet with that rule; a chain no rule of which can
// match them decides with its policy. Run answers those packets from a
// table built at compile time (constants), without classifying: the first
// packet of each direction of every connection, and each one a verdict
// cache cannot hold.

// constants holds, per family, hook and state bit, 1 + the deciding rule's
// id, ^chain for a chain policy, or 0 when the packet must be classified.
type constants [2][numHooks][8]int32

// computeConstants fills f.consts; it runs after the rules' verdicts.
func (f *Filter) computeConstants() {
	for fam := range 2 {
		for h := range numHooks {
			for s := range 5 {
				f.consts[fam][h][s] = f.chainConstant(f.hooks[fam][h], fam, uint8(1)<<s)
			}
		}
	}
}

// chainConstant is chain ci's constant decision for packets of family fam
// (0: IPv4) in state bit, or 0.
func (f *Filter) chainConstant(ci int32, fam int, bit uint8) int32 {
	cc := &f.chains[ci]
	for ri := range cc.n {
		r := &f.Rules[cc.first+ri]
		if r.Family == 4 && fam == 1 || r.Family == 6 && fam == 0 || r.States != 0 && (r.States&bit != 0) == r.StateNeg {
			continue // it cannot match such a packet
		}
		if !stateOnly(r) || cc.action[ri].kind > actReject {
			return 0
		}
		return int32(cc.first+ri) + 1
	}
	return ^ci
}

// stateOnly reports whether a rule matches on the connection state alone
// (and its family): no protocol, address, set, port, interface, flag, ICMP
// or rate-limit match.
func stateOnly(r *rules.Rule) bool {
	return r.Proto < 0 && len(r.Src) == 0 && len(r.Dst) == 0 && r.SrcSet == "" && r.DstSet == "" &&
		len(r.SPorts) == 0 && len(r.DPorts) == 0 && r.In == "" && r.Out == "" && !r.TCPFlags &&
		r.ICMPType < 0 && r.Limit == nil
}

// constant returns the table's answer for a packet, if it has one.
func (f *Filter) constant(ctx Ctx, v6 int, hook Hook, state uint8) (Result, bool) {
	c := f.consts[v6][hook][bits.TrailingZeros8(state)&7]
	switch {
	case c > 0:
		rid := c - 1
		ctx.Path.add(rid)
		return Result{Verdict: f.ruleVerdict[rid], Rule: rid, Logged: -1}, true
	case c < 0:
		ci := ^c
		ctx.Path.add(PolicyStep(ci))
		return Result{Verdict: f.chains[ci].policy, Rule: -1, Chain: ci, Logged: -1}, true
	}
	return Result{}, false
}
