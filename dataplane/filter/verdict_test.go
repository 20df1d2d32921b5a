package filter_test

import (
	"testing"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet"
)

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := filter.DropReason(0); r < filter.NumDropReasons; r++ {
		s := r.String()
		if seen[s] {
			t.Errorf("duplicate drop reason name %q", s)
		}
		seen[s] = true
	}
	// The malformed reasons mirror packet.Reason one for one.
	for r := packet.Reason(1); r < packet.NumReasons; r++ {
		if got, want := filter.DropReason(r).String(), r.String(); got != want {
			t.Errorf("DropReason(%d) = %q; packet.Reason = %q", r, got, want)
		}
	}
}
