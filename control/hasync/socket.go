package hasync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// openSockets opens the node's sockets: one, bound to Local, for unicast
// (conntrackd's UDP); for multicast (conntrackd's Multicast) one bound to
// the group that has joined it, and one that sends to it from Local's
// address, as conntrackd's server and client sockets do.
func openSockets(cfg *Config) (recv, send *net.UDPConn, err error) {
	if !cfg.Group.IsValid() {
		c, err := listenUDP(cfg.Local, cfg.Interface, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("sync: listening on %s: %w", cfg.Local, err)
		}
		return c, c, nil
	}
	g := cfg.Group
	recv, err = listenUDP(g, cfg.Interface, func(fd int) error { return join(fd, g.Addr(), cfg.Local.Addr(), cfg.Interface) })
	if err != nil {
		return nil, nil, fmt.Errorf("sync: joining multicast group %s on %s: %w", g, cfg.Local.Addr(), err)
	}
	send, err = listenUDP(netip.AddrPortFrom(cfg.Local.Addr(), 0), cfg.Interface, func(fd int) error { return sendTo(fd, g.Addr(), cfg.Local.Addr(), cfg.Interface) })
	if err != nil {
		recv.Close()
		return nil, nil, fmt.Errorf("sync: sending to multicast group %s from %s: %w", g, cfg.Local.Addr(), err)
	}
	return recv, send, nil
}

// listenUDP binds a UDP socket to at (SO_REUSEADDR, and to the device
// iface if set), with more options set by opt before the bind.
func listenUDP(at netip.AddrPort, iface string, opt func(fd int) error) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			if serr == nil && iface != "" {
				serr = syscall.BindToDevice(int(fd), iface)
			}
			if serr == nil && opt != nil {
				serr = opt(int(fd))
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", at.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// join makes the socket a member of group, on the interface whose
// address is local (IPv4) or on iface (IPv6).
func join(fd int, group, local netip.Addr, iface string) error {
	if group.Is4() {
		return unix.SetsockoptIPMreq(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreq{Multiaddr: group.As4(), Interface: local.As4()})
	}
	idx, err := ifIndex(iface)
	if err != nil {
		return err
	}
	return unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(idx)})
}

// sendTo sets the socket to send to group from local's interface (IPv4)
// or iface (IPv6), one hop, without looping its messages back.
func sendTo(fd int, group, local netip.Addr, iface string) error {
	if group.Is4() {
		return errors.Join(unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, local.As4()),
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1))
	}
	idx, err := ifIndex(iface)
	if err != nil {
		return err
	}
	return errors.Join(unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, idx),
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0),
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1))
}

// ifIndex is iface's index, which IPv6 multicast needs.
func ifIndex(iface string) (int, error) {
	if iface == "" {
		return 0, errors.New("IPv6 multicast needs sync.interface (the interface to join the group on)")
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}
