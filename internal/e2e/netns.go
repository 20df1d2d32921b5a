package e2e

import (
	"fmt"
	"os/exec"
	"strings"
)

// Netns is a network namespace a run created; Delete removes it.
type Netns string

// NewNetns creates the namespace name (deleting a leftover of that name
// first).
func NewNetns(name string) (Netns, error) {
	_ = exec.Command("ip", "netns", "del", name).Run()
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	return Netns(name), nil
}

// Delete removes the namespace (its interfaces go with it).
func (n Netns) Delete() { _ = exec.Command("ip", "netns", "del", string(n)).Run() }

// Adopt moves iface into the namespace, gives it addr (CIDR) and brings
// it and the loopback up.
func (n Netns) Adopt(iface, addr string) error {
	for _, args := range [][]string{
		{"link", "set", iface, "netns", string(n)},
		{"-n", string(n), "addr", "add", addr, "dev", iface},
		{"-n", string(n), "link", "set", iface, "up"},
		{"-n", string(n), "link", "set", "lo", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// Command is a command to run inside the namespace.
func (n Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
