// Command poweroff-rc is a stand-in RC for the QEMU boot test: it prints the
// ORBIT_* environment it got from orbit-init, then asks the init to power
// the node off (kill -USR2 1), as a real RC would at the end of its work.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ORBIT_") {
			env = append(env, kv)
		}
	}
	sort.Strings(env)
	fmt.Printf("poweroff-rc: %s\n", strings.Join(env, " "))
	if err := syscall.Kill(1, syscall.SIGUSR2); err != nil {
		fmt.Println("poweroff-rc:", err)
	}
	time.Sleep(time.Hour) // the init stops us
}
