package gunshu

import (
	"net"
	"net/netip"
)

// NoCoverWarning is what an entrance without a registered relay in the
// same process logs at start.
const NoCoverWarning = "this entrance has no cover: no relay registered by this server, so every first hop " +
	"sees an address that is not on the manager's list and knows it is talking to an initiator; " +
	"run a relay in the same server and give the entrance its address (see PRIVACY.md)"

// CoverWarning returns NoCoverWarning when the Dialer has no Cover, and
// "" otherwise.
func (d *Dialer) CoverWarning() string {
	if d.Cover == "" {
		return NoCoverWarning
	}
	return ""
}

// coverLocalAddr is the local address routes are sent from for cover: the
// host of the relay's advertised address, when it is an IP of this
// machine. A name, or an address that is not local (the relay sits
// behind NAT, say), gives nil: the system's choice of source is then the
// right one, or the module sets NetDialer.LocalAddr from the relay's
// listener.
func coverLocalAddr(cover string) *net.TCPAddr {
	if cover == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(cover)
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() || !isLocalIP(ip) {
		return nil
	}
	return &net.TCPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
}

// isLocalIP reports whether ip can be bound on this machine: one of its
// interface addresses, or any address of a loopback network (Linux
// answers for all of 127.0.0.0/8).
func isLocalIP(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		pfx, ok := netip.AddrFromSlice(ipnet.IP)
		if !ok {
			continue
		}
		pfx = pfx.Unmap()
		if pfx == ip || (ip.IsLoopback() && ipnet.Contains(ip.AsSlice())) {
			return true
		}
	}
	return false
}
