// Command orbit-rc is a placeholder for the orbit-pxe image's Resource
// Controller, started and supervised by orbit-init (which passes what it
// learnt at boot in ORBIT_* environment variables, see package
// initramfs/layout). It says it is not implemented and sleeps forever, so
// that the init does not restart it in a loop.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Fprintln(os.Stderr, "orbit-rc: not implemented yet")
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
