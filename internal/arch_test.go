// Package internal_test keeps the layering of the module true: it reads the
// import graph with `go list` and fails on an import that points the wrong
// way. The README's package map says the same in prose.
package internal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/orbit-lab/netboot/"

// pkg is one package of the module as `go list -json` describes it, with
// the module prefix cut from every path.
type pkg struct {
	Path    string
	Imports []string // direct, without the tests' own imports
	Deps    []string // transitive
}

// wire holds the packages every side may import: the wire types of the two
// protocols (the RC's and the operator API's).
var wire = []string{"rc/proto", "rc/proto/mcast", "am/apiv1"}

// services are the trees of the long-lived services; a package belongs to
// the first whose path it is or lies below.
var services = []string{"am", "dhcpd", "tftpd", "rc"}

func under(path, root string) bool { return path == root || strings.HasPrefix(path, root+"/") }

func serviceOf(path string) string {
	for _, s := range services {
		if under(path, s) && !slices.Contains(wire, path) {
			return s
		}
	}
	return ""
}

// rule is one direction the imports must not take.
type rule struct {
	name string
	// bad reports why p's import (or, with transitive, dependency) dep
	// breaks the rule, or "" if it does not.
	bad        func(p, dep string) string
	transitive bool
}

var rules = []rule{
	{
		name: "internal/ imports no service (except the wire types)",
		bad: func(p, dep string) string {
			if under(p, "internal") && serviceOf(dep) != "" {
				return "an internal/ helper sits below the services"
			}
			return ""
		},
	},
	{
		name: "wire types import nothing of the module but each other",
		bad: func(p, dep string) string {
			if slices.Contains(wire, p) && !slices.Contains(wire, dep) {
				return "wire types are a leaf every side imports"
			}
			return ""
		},
	},
	{
		name: "a service imports no other service (except the wire types)",
		bad: func(p, dep string) string {
			if s, d := serviceOf(p), serviceOf(dep); s != "" && d != "" && s != d {
				return "services meet only in cmd/ and on the wire"
			}
			return ""
		},
	},
	{
		name: "client-side packages do not link the store",
		bad: func(p, dep string) string {
			client := p == "internal/amclient" || p == "internal/imaging" || p == "cmd/nbctl"
			if client && dep == "internal/store" {
				return "the client speaks the API's wire types, not the database's"
			}
			return ""
		},
		transitive: true,
	},
	{
		name: "only cmd/ reads the configuration file",
		bad: func(p, dep string) string {
			if dep == "internal/config" && !under(p, "cmd") {
				return "services take their own typed Config, filled by cmd/netbootd"
			}
			return ""
		},
	},
	{
		name: "nbctl does not link the power drivers",
		bad: func(p, dep string) string {
			if p == "cmd/nbctl" && (under(dep, "am/power") || dep == "internal/qmp") {
				return "the inventory's power spec is checked by syntax alone"
			}
			return ""
		},
		transitive: true,
	},
}

// violations lists every import of pkgs that breaks a rule.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		for _, r := range rules {
			deps := p.Imports
			if r.transitive {
				deps = p.Deps
			}
			for _, d := range deps {
				if why := r.bad(p.Path, d); why != "" {
					verb := "imports"
					if r.transitive {
						verb = "links"
					}
					out = append(out, fmt.Sprintf("%s %s %s: %s (%s)", p.Path, verb, d, r.name, why))
				}
			}
		}
	}
	return out
}

func TestViolations(t *testing.T) {
	tests := []struct {
		name string
		pkg  pkg
		want int
	}{
		{"helper on a service", pkg{Path: "internal/timeline", Imports: []string{"tftpd"}}, 1},
		{"helper on wire types", pkg{Path: "internal/amclient", Imports: []string{"rc/proto", "am/apiv1"}}, 0},
		{"client on the store", pkg{Path: "internal/amclient", Deps: []string{"internal/store"}}, 1},
		{"service on a service", pkg{Path: "dhcpd", Imports: []string{"am/pxelink"}}, 1},
		{"service on its own subpackage", pkg{Path: "dhcpd", Imports: []string{"dhcpd/ra"}}, 0},
		{"service on wire types", pkg{Path: "am/rcbroker", Imports: []string{"rc/proto"}}, 0},
		{"wire types on a helper", pkg{Path: "am/apiv1", Imports: []string{"internal/store"}}, 1},
		{"service on the config", pkg{Path: "dhcpd", Imports: []string{"internal/config"}}, 1},
		{"cmd on the config", pkg{Path: "cmd/netbootd", Imports: []string{"internal/config"}}, 0},
		{"nbctl on QMP", pkg{Path: "cmd/nbctl", Deps: []string{"internal/qmp"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := violations([]pkg{tt.pkg}); len(got) != tt.want {
				t.Errorf("violations = %q, want %d", got, tt.want)
			}
		})
	}
}

// TestLayering checks the module's real import graph.
func TestLayering(t *testing.T) {
	pkgs, err := listModule()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages of the module: the graph was not read", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

func listModule() ([]pkg, error) {
	// go test runs with the go command's own directory on PATH.
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = ".." // the module root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath    string
			Imports, Deps []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, pkg{Path: strings.TrimPrefix(p.ImportPath, module), Imports: ours(p.Imports), Deps: ours(p.Deps)})
	}
	return pkgs, nil
}

// ours keeps the module's own packages, without the module prefix.
func ours(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rest)
		}
	}
	return out
}

// TestPackageMap checks that the README's package map names every package
// of the module (a folder named with a trailing slash covers its own
// package; bench/ covers the benchmarks).
func TestPackageMap(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	pkgs, err := listModule()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		named := strings.Contains(layout, "`"+p.Path+"`") || strings.Contains(layout, "`"+p.Path+"/`")
		if !named && !under(p.Path, "bench") && p.Path != "internal" {
			t.Errorf("README.md's package map does not name %s", p.Path)
		}
	}
}
