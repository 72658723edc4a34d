// Package gunshu implements the Gunshu anonymizing relay protocol (2003)
// in plain Go, without Caddy. PROTOCOL.md is the normative text; the
// names here follow it.
//
// # Roles and their names
//
// A Manager keeps the list of live relays: it answers reg (a relay
// registering) and list (an initiator asking), and its patrol tests every
// listed relay now and then. The protocol calls a listed relay a Service;
// in this package the Service is a Relay, and what a Registry stores of
// one is a ServiceRecord.
//
// The Initiator builds a route: it asks the Manager for the list, picks
// relays at random and sends est with a list to the first of them. Here
// the Initiator is a Dialer (Dialer.Establish, Dialer.DialContext). An
// Entrance is an Initiator for clients that know nothing of Gunshu: it
// serves SOCKS5 and HTTP proxy clients, or sends every connection to one
// fixed responder, and builds one route per connection with its Dialer.
//
// A Relay receiving est picks the next hop from the list, passes the rest
// of the list on, and once the route answers ok copies bytes both ways.
// The Responder is the route's end: it answers est with ok, waits for
// forward and hands the stream to the application (Responder.Handshake,
// Responder.Listen for a net.Listener of established streams, or
// Responder.ListenShared for a port that also serves another protocol).
//
// Three different bounds: MessageLimits bound what a peer may send (the
// longest line, the longest list); a SessionLimiter bounds the sessions a
// server holds at once, in all and per source address; Timeouts bound
// every wait of a handshake.
//
// # Files
//
//	wire.go        the codec: lines, counts, addresses, lists, messages
//	sniff.go       SniffCommand: does a connection open with a command?
//	client.go      one-shot exchanges as a client: FetchList, Register, Ping,
//	               ProbeRelay (a relay or a responder?)
//	manager.go     Manager: reg, list, verification, patrol
//	restore.go     Manager.Restore: a saved list listed again after a restart
//	registry.go    Registry, ServiceRecord, MemoryRegistry, PatrolClaimer
//	register.go    Registrar: a relay's registration loop
//	relay.go       Relay: est (read as the Responder reads it), the next
//	               hop dialed aside; limits, busy answers; Timeouts
//	routecheck.go  checkList: the hop bound, and lists naming the relay
//	hop.go         a relayed route cut through: est and bytes on at once
//	responder.go   Responder and its stream
//	listener.go    Listener: streams of a port, or of a port shared with
//	               another protocol (ListenShared)
//	serve.go       accept loops, KeepAccepting and the accept-error rule
//	initiator.go   Dialer: route choice, Establish
//	listcache.go   the Dialer's list cache: background refresh, last good list
//	routesize.go   the law of how many relays a route is offered
//	guards.go      Guards: an initiator's long-lived first hops
//	guardstore.go  where guard sets are kept (memory, file, Caddy storage)
//	cover.go       cover: routes leaving from the initiator's own relay
//	entrance.go    Entrance: ordinary clients in, one route per connection
//	pipeline.go    an entrance's bytes sent before ok, kept and replayed
//	proxy.go       the SOCKS5 and HTTP proxy requests an Entrance reads
//	socks.go       SOCKS5 (RFC 1928, RFC 1929)
//	httpproxy.go   HTTP/1 proxy requests: CONNECT and absolute form
//	policy.go      Policy: which addresses may be dialed or registered
//	ranges.go      the special-purpose ranges and IPv4-in-IPv6 forms, with RFCs
//	limit.go       SessionLimiter, per-source rate limits
//	observe.go     Session, Observer, outcomes, the session log line
//	redact.go      RedactedError, RedactText: logs without addresses
//	random.go      the random source of route choices
//	exposure.go    what colluding relays learn, computed exactly
//	simulate.go    Simulation: route choice measured without a network
//
// Subpackages: forward moves an established route's bytes (splice on
// Linux, half-closes, resets, the idle timeout); redisregistry is a
// Registry in Redis that several managers share.
package gunshu
