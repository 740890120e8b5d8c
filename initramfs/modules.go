package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrModuleNotFound is returned (wrapped, with the module's name) when a
// requested module, or one it depends on, is neither a .ko file of the
// kernel nor built into it.
var ErrModuleNotFound = errors.New("kernel module not found")

// Module is one kernel module of the image.
type Module struct {
	Name    string   // canonical name, '-' written as '_': virtio_net
	Path    string   // relative to the modules directory: kernel/drivers/net/virtio_net.ko
	Depends []string // direct dependencies, canonical names
}

// ModuleSet is the result of ResolveModules.
type ModuleSet struct {
	// Load lists the modules to put in the image, dependencies first: the
	// order the init loads them in.
	Load []Module
	// Builtin lists requested or needed modules that are built into the
	// kernel, so need no loading.
	Builtin []string
}

// canonical writes a module name as the kernel does: '-' and '_' are the
// same character in module names.
func canonical(name string) string {
	return strings.ReplaceAll(strings.TrimSpace(name), "-", "_")
}

// moduleName returns the canonical module name of a module file name, and
// whether it is a module file (.ko, .ko.gz, .ko.xz, .ko.zst).
func moduleName(file string) (string, bool) {
	base := filepath.Base(file)
	for _, ext := range []string{".ko", ".ko.gz", ".ko.xz", ".ko.zst"} {
		if n, ok := strings.CutSuffix(base, ext); ok {
			return canonical(n), true
		}
	}
	return "", false
}

// ResolveModules returns the dependency closure of the named modules of the
// kernel whose modules directory (lib/modules/<version>) is modDir, in load
// order: for each requested module in the order given, its dependencies
// (depth first, in the order the kernel lists them) and then the module, each
// module once. Only the closure is returned.
//
// Dependencies come from modDir/modules.dep when it exists (as depmod writes
// it), else from each module's own .modinfo ELF section (depends=), which is
// what the Debian kernel package needs: it ships no modules.dep. Soft
// dependencies (softdep=) are not followed. Modules listed in
// modDir/modules.builtin are reported in Builtin and not loaded.
// Reading .modinfo works on uncompressed and gzip-compressed modules; an .xz
// or .zst module is an error (name it from modules.dep instead).
func ResolveModules(modDir string, names []string) (ModuleSet, error) {
	builtin, err := readBuiltin(modDir)
	if err != nil {
		return ModuleSet{}, err
	}
	idx, err := newModuleIndex(modDir)
	if err != nil {
		return ModuleSet{}, err
	}

	var (
		set      ModuleSet
		done     = map[string]bool{}
		visiting = map[string]bool{}
	)
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if done[name] {
			return nil
		}
		if visiting[name] {
			return fmt.Errorf("module %q: dependency cycle: %s", name, strings.Join(append(chain, name), " -> "))
		}
		if builtin[name] {
			done[name] = true
			set.Builtin = append(set.Builtin, name)
			return nil
		}
		m, err := idx.module(name)
		if err != nil {
			if len(chain) > 0 {
				return fmt.Errorf("%w (needed by %s)", err, strings.Join(chain, " <- "))
			}
			return err
		}
		visiting[name] = true
		for _, d := range m.Depends {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		visiting[name] = false
		done[name] = true
		set.Load = append(set.Load, m)
		return nil
	}
	for _, n := range names {
		n = canonical(n)
		if n == "" {
			continue
		}
		if err := visit(n, nil); err != nil {
			return ModuleSet{}, err
		}
	}
	return set, nil
}

// moduleIndex finds modules by name and their dependencies.
type moduleIndex struct {
	dir   string
	paths map[string]string   // name -> path relative to dir
	deps  map[string][]string // from modules.dep; nil when there is none
}

func newModuleIndex(modDir string) (*moduleIndex, error) {
	idx := &moduleIndex{dir: modDir, paths: map[string]string{}}
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	switch {
	case err == nil:
		defer f.Close()
		idx.deps = map[string][]string{}
		if err := idx.readModulesDep(f); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return idx, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	// No modules.dep: index every module file under the directory.
	err = filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name, ok := moduleName(p)
		if !ok {
			return nil
		}
		rel, err := filepath.Rel(modDir, p)
		if err != nil {
			return err
		}
		if prev, dup := idx.paths[name]; dup {
			// Two files for one name: keep the first in lexical order, so
			// the choice does not depend on the walk.
			if prev < rel {
				return nil
			}
		}
		idx.paths[name] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modules directory %s: %w", modDir, err)
	}
	return idx, nil
}

// readModulesDep reads depmod's "path: dep-path dep-path ..." lines.
func (idx *moduleIndex) readModulesDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("line %d: no ':' in %q", n, line)
		}
		name, ok := moduleName(mod)
		if !ok {
			return fmt.Errorf("line %d: %q is not a module file", n, mod)
		}
		var deps []string
		for _, d := range strings.Fields(rest) {
			dn, ok := moduleName(d)
			if !ok {
				return fmt.Errorf("line %d: %q is not a module file", n, d)
			}
			deps = append(deps, dn)
		}
		idx.paths[name] = mod
		idx.deps[name] = deps
	}
	return sc.Err()
}

func (idx *moduleIndex) module(name string) (Module, error) {
	rel, ok := idx.paths[name]
	if !ok {
		return Module{}, fmt.Errorf("module %q: %w in %s", name, ErrModuleNotFound, idx.dir)
	}
	m := Module{Name: name, Path: rel}
	if idx.deps != nil {
		m.Depends = idx.deps[name]
		return m, nil
	}
	info, err := readModinfo(filepath.Join(idx.dir, rel))
	if err != nil {
		return Module{}, fmt.Errorf("module %q: %w", name, err)
	}
	for _, d := range strings.Split(info["depends"], ",") {
		if d = canonical(d); d != "" {
			m.Depends = append(m.Depends, d)
		}
	}
	return m, nil
}

// readModinfo returns the key=value pairs of a module's .modinfo section.
// A key that occurs more than once (alias=, parm=) keeps its first value.
func readModinfo(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.ReaderAt = f
	switch {
	case strings.HasSuffix(path, ".ko"):
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = bytes.NewReader(b)
	default:
		return nil, fmt.Errorf("%s: cannot read .modinfo of a compressed module (only .ko and .ko.gz); provide modules.dep", path)
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", path, err)
	}
	return parseModinfo(data), nil
}

// parseModinfo parses a .modinfo section: NUL-separated key=value strings.
func parseModinfo(data []byte) map[string]string {
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok || len(k) == 0 {
			continue
		}
		if _, seen := info[string(k)]; !seen {
			info[string(k)] = string(v)
		}
	}
	return info
}

// readBuiltin reads modDir/modules.builtin (paths of built-in modules, one a
// line). A missing file means no module is built in.
func readBuiltin(modDir string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if n, ok := moduleName(strings.TrimSpace(line)); ok {
			builtin[n] = true
		}
	}
	return builtin, nil
}

// modulesDep renders a modules.dep for the modules of the image (paths
// relative to the modules directory, each module's full dependency list in
// the order modprobe expects: the last one is loaded first), so that tools
// such as modprobe or u-root's kmodule.Probe work in the image too.
func modulesDep(mods []Module) []byte {
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	var b bytes.Buffer
	for _, m := range mods {
		// Transitive closure of m's dependencies, in load order.
		var order []string
		seen := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			if seen[n] {
				return
			}
			seen[n] = true
			for _, d := range byName[n].Depends {
				walk(d)
			}
			order = append(order, n)
		}
		for _, d := range m.Depends {
			walk(d)
		}
		fmt.Fprintf(&b, "%s:", m.Path)
		slices.Reverse(order)
		for _, n := range order {
			if dm, ok := byName[n]; ok { // built-in dependencies have no file
				fmt.Fprintf(&b, " %s", dm.Path)
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
