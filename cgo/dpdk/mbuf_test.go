package dpdk

import "testing"

// TestMbufLayout checks that the offsets Go reads mbuf fields at match C's
// offsetof for the DPDK headers this package was built against.
func TestMbufLayout(t *testing.T) {
	for name, off := range mbufLayout() {
		if off[0] != off[1] {
			t.Errorf("rte_mbuf.%s: Go reads offset %d; C offsetof is %d", name, off[0], off[1])
		}
	}
}
