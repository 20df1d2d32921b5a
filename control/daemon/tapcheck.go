package daemon

import (
	"fmt"
	"net"
	"strings"

	"github.com/dpfw/dpfw/control/config"
)

// Interfaces looks host interfaces up in dpfw's network namespace (the
// net package's, or a fake in tests).
type Interfaces struct {
	ByIndex func(int) (string, error)
	ByName  func(string) (int, error)
}

// HostInterfaces are this namespace's interfaces.
var HostInterfaces = Interfaces{
	ByIndex: func(i int) (string, error) {
		ifc, err := net.InterfaceByIndex(i)
		if err != nil {
			return "", err
		}
		return ifc.Name, nil
	},
	ByName: func(n string) (int, error) {
		ifc, err := net.InterfaceByName(n)
		if err != nil {
			return 0, err
		}
		return ifc.Index, nil
	},
}

// devarg returns the value of key in DPDK devargs ("net_tap0,iface=x").
func devarg(devargs, key string) string {
	for _, kv := range strings.Split(devargs, ",")[1:] {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// CheckTap fails when a port created on a host interface (net_tap) is no
// longer attached to it after the start: the interface DPDK created at
// probe (ifIndex) must still be in this namespace, under the configured
// name. Otherwise something moved or deleted the tap while the port
// started, and the tap PMD attached to a second one it created under the
// same name: the port would forward nothing and log nothing (see the
// README's "Readiness").
func CheckTap(i int, pc config.Port, ifIndex int, host Interfaces) error {
	if ifIndex == 0 {
		return nil
	}
	name := devarg(pc.Device, "iface")
	got, err := host.ByIndex(ifIndex)
	switch {
	case err != nil:
		return fmt.Errorf("ports[%d] (%s): the interface DPDK created for %s (ifindex %d) is gone from dpfw's network namespace: it was moved or deleted while the port started, and the port is attached to another; move a tap into its namespace only once dpfw is ready (--ready-file, /readyz)",
			i, pc.Name, pc.Device, ifIndex)
	case name != "" && got != name:
		return fmt.Errorf("ports[%d] (%s): the interface DPDK created for %s (ifindex %d) is now named %q, not %q: it was renamed while the port started; move or rename a tap only once dpfw is ready (--ready-file, /readyz)",
			i, pc.Name, pc.Device, ifIndex, got, name)
	}
	if name != "" {
		if idx, err := host.ByName(name); err == nil && idx != ifIndex {
			return fmt.Errorf("ports[%d] (%s): %q is ifindex %d, but the port is attached to ifindex %d: the tap was replaced while the port started; move a tap into its namespace only once dpfw is ready (--ready-file, /readyz)",
				i, pc.Name, name, idx, ifIndex)
		}
	}
	return nil
}
