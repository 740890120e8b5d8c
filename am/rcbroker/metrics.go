package rcbroker

import (
	"context"
	"fmt"

	"github.com/orbit-lab/netboot/rc/proto"
)

// RCStates counts the enrolled RCs by what they are doing now (the states
// of GET /api/v1/rc: online, offline, rebooting, powered off), every
// state present even at 0: the gauges netbootd's metrics read at each
// scrape.
func (b *Broker) RCStates(ctx context.Context) (map[string]float64, error) {
	es, err := b.st.RCEnrollments(ctx)
	if err != nil {
		return nil, fmt.Errorf("rcbroker: enrolled RCs: %w", err)
	}
	out := map[string]float64{proto.RCOnline: 0, proto.RCOffline: 0, proto.RCRebooting: 0, proto.RCPoweredOff: 0}
	for _, e := range es {
		out[b.rcState(e)]++
	}
	return out, nil
}
