package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/config"
)

// TestCheckTap: a tap still in place passes; one moved away (its ifindex
// gone from the namespace), renamed, or replaced by a second tap of the
// same name (the start-up race) fails, naming the port and the fix.
func TestCheckTap(t *testing.T) {
	pc := config.Port{Name: "outside", Device: "net_tap0,iface=dpfw0"}
	host := func(byIndex map[int]string) Interfaces {
		return Interfaces{
			ByIndex: func(i int) (string, error) {
				if n, ok := byIndex[i]; ok {
					return n, nil
				}
				return "", errors.New("no such interface")
			},
			ByName: func(n string) (int, error) {
				for i, m := range byIndex {
					if m == n {
						return i, nil
					}
				}
				return 0, errors.New("no such interface")
			},
		}
	}
	for _, c := range []struct {
		name    string
		ifIndex int
		host    map[int]string
		want    string
	}{
		{"in place", 7, map[int]string{7: "dpfw0"}, ""},
		{"not a tap", 0, map[int]string{}, ""},
		{"moved away, replaced", 7, map[int]string{9: "dpfw0"}, "gone from dpfw's network namespace"},
		{"moved away", 7, map[int]string{}, "gone from dpfw's network namespace"},
		{"renamed", 7, map[int]string{7: "eth5"}, `now named "eth5", not "dpfw0"`},
	} {
		err := CheckTap(0, pc, c.ifIndex, host(c.host))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "ports[0] (outside)") || !strings.Contains(err.Error(), "ready")):
			t.Errorf("%s: %v; want an error naming ports[0] (outside), %q and the fix", c.name, err, c.want)
		}
	}
	if err := CheckTap(0, pc, 1, HostInterfaces); err != nil && !strings.Contains(err.Error(), "ports[0]") {
		t.Errorf("the host lookup: %v", err)
	}
}
