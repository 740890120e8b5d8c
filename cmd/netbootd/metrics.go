package main

import (
	"context"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/store"
)

// newMetrics makes this netbootd's metrics and wires in what the services
// do not feed themselves: the boot phases from the timeline's events, as
// the store commits them, and the pool leases, read at each scrape.
func newMetrics(st *store.Store) *metrics.Metrics {
	m := metrics.New()
	st.ObserveEvents(func(e store.Event) { m.BootEvent(e.HRN, e.At, e.Source, e.What) })
	m.CollectGauges("dhcp_leases", "DHCP pool leases not expired, by state (offered, bound, released, declined).", "state",
		func(ctx context.Context) (map[string]float64, error) { return leaseCounts(ctx, st, time.Now()) })
	return m
}

// collectRC adds the enrolled RCs' gauges, read from the broker at each
// scrape.
func collectRC(m *metrics.Metrics, rcb *rcbroker.Broker) {
	m.CollectGauges("rc_enrolled", "Enrolled Resource Controllers, by state: online (polling, or seen within a poll's wait), offline, rebooting, powered-off.", "state", rcb.RCStates)
}

// leaseCounts counts the pool leases that have not expired by state,
// every state present even at 0.
func leaseCounts(ctx context.Context, st *store.Store, now time.Time) (map[string]float64, error) {
	leases, err := st.Leases(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{store.LeaseOffered: 0, store.LeaseBound: 0, store.LeaseReleased: 0, store.LeaseDeclined: 0}
	for _, l := range leases {
		if l.ExpiresAt.After(now) {
			out[l.State]++
		}
	}
	return out, nil
}
