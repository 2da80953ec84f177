package turnserver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Directions of relayed traffic (the "direction" label).
const (
	dirToPeer   = "client_to_peer"
	dirToClient = "peer_to_client"
)

// Reasons a relayed packet is dropped (the "reason" label of
// turnd_dropped_packets_total).
const (
	dropBandwidth    = "bandwidth"     // over the allocation's --bandwidth-limit
	dropNoPermission = "no_permission" // from a peer the client has no permission for
	dropPeerPort     = "peer_port"     // to or from a port the narrow policy (OnlyPeers) does not name
)

// Reasons an allocation is refused (the "reason" label of
// turnd_allocation_refusals_total).
const (
	refuseUserQuota    = "user_quota"    // --max-allocations-per-user reached (486)
	refuseAddressQuota = "address_quota" // --max-allocations-per-address reached (486)
	refuseTotalQuota   = "total_quota"   // --max-allocations reached (486)
	refuseNoPort       = "no_port"       // no free port in --relay-ports (508)
	refuseTCPRelay     = "tcp_relay"     // RFC 6062 TCP relay requested (508)
	refuseFamily       = "family"        // address family other than the relay IP's (508)
)

// metrics is one server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	allocationsTotal  prometheus.Counter
	refusals          *prometheus.CounterVec
	authFailures      *prometheus.CounterVec
	peerDenied        prometheus.Counter
	tcpRefused        prometheus.Counter
	bytesToPeer       prometheus.Counter
	bytesToClient     prometheus.Counter
	packetsToPeer     prometheus.Counter
	packetsToClient   prometheus.Counter
	dropBandwidthPeer prometheus.Counter // client_to_peer
	dropBandwidthCli  prometheus.Counter // peer_to_client
	dropNoPermission  prometheus.Counter
	dropPeerPortOut   prometheus.Counter // client_to_peer
	dropPeerPortIn    prometheus.Counter // peer_to_client
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg}

	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "turnd_allocations",
		Help: "Allocations currently open.",
	}, func() float64 { return float64(s.AllocationCount()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "turnd_tcp_connections",
		Help: "TCP and TLS client connections currently open.",
	}, func() float64 { return float64(s.tcpConnCount()) }))

	m.allocationsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "turnd_allocations_total",
		Help: "Allocations created since start.",
	})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnd_allocation_refusals_total",
		Help: "Allocate requests refused after authentication, by reason (user_quota, address_quota, total_quota, no_port, tcp_relay, family).",
	}, []string{"reason"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnd_auth_failures_total",
		Help: "Requests whose credentials were refused, by reason (bad_password, unknown_user, expired, wrong_realm, bad_username).",
	}, []string{"reason"})
	m.peerDenied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "turnd_peer_denied_total",
		Help: "CreatePermission/ChannelBind/Connect requests refused by the peer address policy.",
	})
	m.tcpRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "turnd_tcp_connections_refused_total",
		Help: "TCP/TLS connections closed at once because --max-tcp-connections were open.",
	})
	relayed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnd_relayed_bytes_total",
		Help: "Payload bytes relayed, by direction (client_to_peer, peer_to_client).",
	}, []string{"direction"})
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnd_relayed_packets_total",
		Help: "Packets relayed, by direction (client_to_peer, peer_to_client).",
	}, []string{"direction"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnd_dropped_packets_total",
		Help: "Relay packets dropped, by direction and reason (bandwidth: over --bandwidth-limit; no_permission: from a peer without permission; peer_port: a port the narrow peer policy does not name).",
	}, []string{"direction", "reason"})
	reg.MustRegister(m.allocationsTotal, m.refusals, m.authFailures, m.peerDenied, m.tcpRefused, relayed, packets, dropped)

	m.bytesToPeer = relayed.WithLabelValues(dirToPeer)
	m.bytesToClient = relayed.WithLabelValues(dirToClient)
	m.packetsToPeer = packets.WithLabelValues(dirToPeer)
	m.packetsToClient = packets.WithLabelValues(dirToClient)
	m.dropBandwidthPeer = dropped.WithLabelValues(dirToPeer, dropBandwidth)
	m.dropBandwidthCli = dropped.WithLabelValues(dirToClient, dropBandwidth)
	m.dropNoPermission = dropped.WithLabelValues(dirToClient, dropNoPermission)
	m.dropPeerPortOut = dropped.WithLabelValues(dirToPeer, dropPeerPort)
	m.dropPeerPortIn = dropped.WithLabelValues(dirToClient, dropPeerPort)
	// Make the label sets visible (at 0) before the first event.
	for _, r := range []string{authBadPassword, authUnknownUser, authExpired, authWrongRealm, authBadUsername} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{refuseUserQuota, refuseAddressQuota, refuseTotalQuota, refuseNoPort, refuseTCPRelay, refuseFamily} {
		m.refusals.WithLabelValues(r)
	}
	return m
}

// Registry returns the server's own Prometheus registry (turnd_* metrics
// only). An embedding program can gather it next to its own registry.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// MetricsHandler serves the server's metrics in the Prometheus text format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
