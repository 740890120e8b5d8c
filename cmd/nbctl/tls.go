package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/tlscert"
)

// tlsFingerprint prints the fingerprint of the certificate the server
// presents, for an operator to pin once it matches the one netbootd
// logged: the first step against an appliance with http.tls: auto.
func (k *cli) tlsFingerprint(ctx context.Context) error {
	cert, err := amclient.ServerCertificate(ctx, k.server)
	if err != nil {
		return err
	}
	fmt.Fprintln(k.out, tlscert.Fingerprint(cert.Raw))
	names := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	fmt.Fprintf(k.errOut, "UNVERIFIED: this is what %s presented (subject %s; names %s; valid until %s).\n"+
		"Compare it with netbootd's log line \"TLS certificate\" sha256=... before pinning it\n"+
		"(--fingerprint or $NBCTL_FINGERPRINT).\n",
		k.server, cert.Subject, strings.Join(names, ", "), cert.NotAfter.UTC().Format(time.DateOnly))
	return nil
}
