package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
)

// followEvery is how often nodes events --follow asks for new events.
const followEvery = 500 * time.Millisecond

func (k *cli) nodeEvents(ctx context.Context, args []string) error {
	fs, client := k.nodeFlags("nodes events")
	follow := fs.Bool("follow", false, "print new events as they come, until Ctrl-C")
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	c, node := client(), fs.Arg(0)
	evs, err := c.Events(ctx, node, 0)
	if err != nil {
		return err
	}
	if *follow {
		return k.followEvents(ctx, c, node, evs)
	}
	rows := make([][]string, len(evs))
	for i, e := range evs {
		rows[i] = eventRow(e)
	}
	k.table(strings.Join(eventHeader, "\t"), rows)
	return nil
}

var eventHeader = []string{"TIME", "SOURCE", "WHAT", "DETAIL"}

func eventRow(e apiv1.Event) []string {
	return []string{e.At.Local().Format("15:04:05.000"), e.Source, e.What, e.Detail}
}

// eventLine is an event in fixed columns: a followed timeline is printed
// as it comes, so no table can align it afterwards.
func eventLine(cols []string) string {
	return strings.TrimRight(fmt.Sprintf("%-12s  %-6s  %-16s  %s", cols[0], cols[1], cols[2], cols[3]), " ")
}

// followEvents prints the timeline so far, then each new event as the
// appliance records it, asking for those after the last one printed,
// until ctx ends (Ctrl-C), which is a success. An appliance that does not
// answer (a restart) is asked again; one that refuses (the node was
// deleted) ends it.
func (k *cli) followEvents(ctx context.Context, c *amclient.Client, node string, evs []apiv1.Event) error {
	fmt.Fprintln(k.out, eventLine(eventHeader))
	var after int64
	t := time.NewTicker(followEvery)
	defer t.Stop()
	failing := false
	for {
		// A page that brought events may have a next one: ask at once.
		for len(evs) > 0 {
			for _, e := range evs {
				fmt.Fprintln(k.out, eventLine(eventRow(e)))
				after = e.ID
			}
			var err error
			if evs, err = c.Events(ctx, node, after); err != nil {
				break // asked again at the next tick
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var err error
		evs, err = c.Events(ctx, node, after)
		var ae *amclient.Error
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &ae) && ae.Status < http.StatusInternalServerError:
			return err
		case err != nil:
			if !failing {
				fmt.Fprintf(k.errOut, "nbctl: %v: asking again every %v\n", err, followEvery)
				failing = true
			}
		case failing:
			fmt.Fprintln(k.errOut, "nbctl: the appliance answers again")
			failing = false
		}
	}
}
