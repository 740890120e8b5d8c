package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
)

func (k *cli) audit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var q amclient.AuditQuery
	fs.StringVar(&q.Since, "since", "24h", "entries since this RFC 3339 time, or this long ago")
	fs.StringVar(&q.Node, "node", "", "only the entries about this node (HRN)")
	fs.IntVar(&q.Limit, "limit", 0, "at most this many, the newest (default: the appliance's bound)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	list := func(ctx context.Context) ([]apiv1.AuditEntry, error) { return k.c.Audit(ctx, q) }
	return listTable(ctx, k, list, *asJSON, strings.Join(auditHeader, "\t"), auditRow)
}

var auditHeader = []string{"TIME", "WHO", "ROLE", "ADDR", "CALL", "TARGET", "STATUS", "DETAIL"}

func auditRow(e apiv1.AuditEntry) []string {
	role := e.Role
	if role == "" {
		role = "-"
	}
	return []string{e.At.Local().Format(time.DateTime), e.Who, role, e.Addr, e.Method + " " + e.Route, e.Target,
		fmt.Sprint(e.Status), e.Detail}
}
