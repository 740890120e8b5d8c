// Package modroot finds the netboot source tree: nbctl image build compiles
// the node's binaries from it, tests and benchmarks build netbootd and
// read .cache from it.
package modroot

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Module is the module path of the netboot source tree.
const Module = "github.com/orbit-lab/netboot"

// ErrNotFound marks a search that found no netboot go.mod from the start
// directory up to /.
var ErrNotFound = errors.New("not inside the netboot source tree")

// Find returns the netboot source tree holding the current directory.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return From(dir)
}

// From returns the netboot source tree holding dir: the nearest directory,
// dir or above, whose go.mod declares Module. Another module's go.mod on
// the way up (a test's scratch module) is passed over.
func From(dir string) (string, error) {
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if strings.TrimSpace(line) == "module "+Module {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNotFound
		}
		dir = parent
	}
}
