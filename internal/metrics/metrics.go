// Package metrics is netbootd's Prometheus instrumentation: one registry
// per netbootd (no global registerer), the counters and histograms the
// services feed through the methods of *Metrics, and collectors that read
// gauges (leases, enrolled RCs) from their source at scrape time.
//
// Every method works on a nil *Metrics and does nothing: a service built
// without metrics (a test, a tool) passes none. It imports no service: the
// services take a *Metrics in their Config, and cmd/netbootd wires the
// gauges' sources in.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "netbootd"

// Outcomes of a DHCP packet (the outcome label of netbootd_dhcp_packets_total).
const (
	Replied  = "replied"  // a reply was sent
	NoReply  = "no_reply" // no reply by design (another server's offer, a RELEASE, a request not for us)
	Dropped  = "dropped"  // dropped: netbootd_dhcp_drops_total says why
	Unparsed = "unknown"  // the message type of a datagram that was not parsed
)

// Reasons of a DHCP drop (the reason label of netbootd_dhcp_drops_total).
const (
	DropMalformed = "malformed"  // not DHCP, or breaking the protocol
	DropOverload  = "overload"   // every worker busy, the queue full
	DropError     = "error"      // the server failed (database, pool)
	DropSend      = "send_error" // the reply could not be sent
	DropPanic     = "panic"      // a bug
)

// Outcomes of a boot-file transfer (netbootd_boot_file_transfers_total).
const (
	TransferOK          = "ok"
	TransferNotFound    = "not_found"
	TransferNotModified = "not_modified"
	TransferError       = "error"
)

// Boot phases (netbootd_boot_phase_seconds), each measured from the boot's
// start: a power on (reset, reboot) or the node's first DHCPDISCOVER.
const (
	PhaseDHCPAck  = "dhcpack"
	PhaseKernel   = "kernel"
	PhaseEnrolled = "enrolled"
)

// Metrics holds netbootd's metrics and the registry they are served from.
type Metrics struct {
	reg *prometheus.Registry

	dhcpPackets     *prometheus.CounterVec
	dhcpDrops       *prometheus.CounterVec
	transfers       *prometheus.CounterVec
	transferBytes   *prometheus.CounterVec
	transferSeconds *prometheus.HistogramVec
	tftpUnacked     prometheus.Counter
	httpRequests    *prometheus.CounterVec
	httpSeconds     *prometheus.HistogramVec
	imagingBytes    *prometheus.CounterVec
	imagingSessions prometheus.Gauge
	bootPhase       *prometheus.HistogramVec
	boots           *bootTracker
}

// New makes the metrics, registered on a registry of their own with the
// Go runtime's and the process's collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		dhcpPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dhcp", Name: "packets_total",
			Help: "DHCP requests received, by message type and outcome (replied, no_reply, dropped).",
		}, []string{"type", "outcome"}),
		dhcpDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dhcp", Name: "drops_total",
			Help: "DHCP requests dropped, by reason (malformed, overload, error, send_error, panic).",
		}, []string{"reason"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "boot_file", Name: "transfers_total",
			Help: "Boot-file transfers (TFTP reads, HTTP GETs), by protocol and outcome (ok, not_found, not_modified, error).",
		}, []string{"protocol", "outcome"}),
		transferBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "boot_file", Name: "bytes_total",
			Help: "Boot-file bytes sent, by protocol.",
		}, []string{"protocol"}),
		transferSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "boot_file", Name: "transfer_duration_seconds",
			Help:    "Duration of the boot-file transfers that went out whole, by protocol.",
			Buckets: []float64{.001, .005, .025, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"protocol"}),
		tftpUnacked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "tftp", Name: "unacked_datagrams_total",
			Help: "TFTP datagrams no ACK answered within tftp.timeout (each sent again, or its transfer given up): lost packets, or clients slower than the timeout.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests to the AM, by method, route (the route's pattern, never the raw path) and status.",
		}, []string{"method", "route", "status"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Duration of HTTP requests to the AM, by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		imagingBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "imaging", Name: "bytes_total",
			Help: "Disk-image bytes moved between netbootd and the nodes, by direction (load: to nodes, save: from nodes).",
		}, []string{"direction"}),
		imagingSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "imaging", Name: "sessions_active",
			Help: "Disk-image transfers running now: HTTP loads and saves, and multicast sessions.",
		}),
		bootPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "boot_phase_seconds",
			Help:    "Time from a node's boot start (power on, or its first DHCPDISCOVER) to each phase: dhcpack, kernel (loaded), enrolled (its RC).",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200},
		}, []string{"phase"}),
	}
	m.boots = newBootTracker(m.bootPhase)
	// The known label values start at 0, so that a rate or a dashboard
	// panel has a series before the first event.
	for _, reason := range []string{DropMalformed, DropOverload, DropError, DropSend, DropPanic} {
		m.dhcpDrops.WithLabelValues(reason)
	}
	for _, protocol := range []string{"tftp", "http"} {
		m.transferBytes.WithLabelValues(protocol)
		m.transferSeconds.WithLabelValues(protocol)
		for _, outcome := range []string{TransferOK, TransferNotFound, TransferError} {
			m.transfers.WithLabelValues(protocol, outcome)
		}
	}
	for _, direction := range []string{"load", "save"} {
		m.imagingBytes.WithLabelValues(direction)
	}
	for _, phase := range []string{PhaseDHCPAck, PhaseKernel, PhaseEnrolled} {
		m.bootPhase.WithLabelValues(phase)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.dhcpPackets, m.dhcpDrops, m.transfers, m.transferBytes, m.transferSeconds, m.tftpUnacked,
		m.httpRequests, m.httpSeconds, m.imagingBytes, m.imagingSessions, m.bootPhase,
	)
	return m
}

// Registry is where the metrics are registered: a test reads them with
// Gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text (or negotiated) format.
// A gauge whose source fails is left out of the answer, which still
// carries the rest (and the failure is counted in promhttp's own metric).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: m.reg})
}

// DHCPPacket counts one request of msgType (DISCOVER, REQUEST, ...) that
// was replied to or needed no reply.
func (m *Metrics) DHCPPacket(msgType, outcome string) {
	if m == nil {
		return
	}
	m.dhcpPackets.WithLabelValues(msgType, outcome).Inc()
}

// DHCPDrop counts one request of msgType (Unparsed when it was not parsed)
// dropped for reason.
func (m *Metrics) DHCPDrop(msgType, reason string) {
	if m == nil {
		return
	}
	m.dhcpPackets.WithLabelValues(msgType, Dropped).Inc()
	m.dhcpDrops.WithLabelValues(reason).Inc()
}

// Transfer counts one boot-file transfer over protocol (tftp, http), its
// bytes, and the duration of a whole one.
func (m *Metrics) Transfer(protocol, outcome string, bytes int64, took time.Duration) {
	if m == nil {
		return
	}
	m.transfers.WithLabelValues(protocol, outcome).Inc()
	if bytes > 0 {
		m.transferBytes.WithLabelValues(protocol).Add(float64(bytes))
	}
	// Only whole transfers: a probe for a missing file takes no time and
	// would drown the histogram.
	if outcome == TransferOK {
		m.transferSeconds.WithLabelValues(protocol).Observe(took.Seconds())
	}
}

// TFTPUnacked counts n datagrams of a TFTP transfer that no ACK answered
// in time.
func (m *Metrics) TFTPUnacked(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.tftpUnacked.Add(float64(n))
}

// HTTPRequest counts one request to the AM. route is the matched route's
// pattern (gin's FullPath): a raw path would make a series per node and
// per probe; a request that matched no route comes as "".
func (m *Metrics) HTTPRequest(method, route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
		// Methods are free text of the client's: unmatched ones are one
		// series, not one per made-up method.
		method = "other"
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpSeconds.WithLabelValues(method, route).Observe(took.Seconds())
}

// ImagingBytes counts n disk-image bytes moved in direction ("load": to
// nodes, "save": from nodes). A hook for the imaging code.
func (m *Metrics) ImagingBytes(direction string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.imagingBytes.WithLabelValues(direction).Add(float64(n))
}

// ImagingSessionStarted counts one disk-image transfer as running (a
// node's load or save, or one multicast session) until its
// ImagingSessionEnded.
func (m *Metrics) ImagingSessionStarted() {
	if m != nil {
		m.imagingSessions.Inc()
	}
}

// ImagingSessionEnded ends a transfer ImagingSessionStarted began.
func (m *Metrics) ImagingSessionEnded() {
	if m != nil {
		m.imagingSessions.Dec()
	}
}

// BootEvent feeds one timeline event (its node, time, source and what,
// as the store records them) to the boot-phase histograms.
func (m *Metrics) BootEvent(node string, at time.Time, source, what string) {
	if m == nil {
		return
	}
	m.boots.event(node, at, source, what)
}

// Counts reads labelled gauge values from their source at scrape time.
type Counts func(ctx context.Context) (map[string]float64, error)

// scrapeTimeout bounds one source's read during a scrape.
const scrapeTimeout = 5 * time.Second

// CollectGauges registers gauges read by read at every scrape: one series
// per key of its answer, the key as the value of label (no label when
// label is ""; then the key "" is the value). name is the full metric
// name after the namespace.
func (m *Metrics) CollectGauges(name, help, label string, read Counts) {
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	m.reg.MustRegister(&gaugeCollector{desc: prometheus.NewDesc(namespace+"_"+name, help, labels, nil), labelled: label != "", read: read})
}

// gaugeCollector is the collector CollectGauges registers.
type gaugeCollector struct {
	desc     *prometheus.Desc
	labelled bool
	read     Counts
}

func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	vals, err := g.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
		return
	}
	for k, v := range vals {
		if g.labelled {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, k)
		} else {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
		}
	}
}
