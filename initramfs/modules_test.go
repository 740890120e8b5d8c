package initramfs

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// fakeKO returns a minimal ELF64 relocatable object whose only content is a
// .modinfo section with the given key=value strings, as a kernel module has.
func fakeKO(t *testing.T, modinfo ...string) []byte {
	t.Helper()
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	shstrOff := infoOff + uint64(len(info))
	shoff := (shstrOff + uint64(len(shstr)) + 7) &^ 7

	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shoff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	must(t, binary.Write(&b, binary.LittleEndian, h))
	b.Write(info)
	b.Write(shstr)
	b.Write(make([]byte, int(shoff)-b.Len()))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: infoOff, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstr)), Addralign: 1},
	} {
		must(t, binary.Write(&b, binary.LittleEndian, s))
	}
	return b.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeModules writes a modules directory: the virtio-net chain of the Debian
// kernel, e1000, an unrelated module, a module with a dash in its file name
// and a built-in module.
func fakeModules(t *testing.T, dir string) {
	t.Helper()
	mods := map[string][]string{
		"kernel/drivers/virtio/virtio_ring.ko":             {"depends="},
		"kernel/drivers/virtio/virtio.ko":                  {"depends="},
		"kernel/net/core/failover.ko":                      {"depends="},
		"kernel/drivers/net/net_failover.ko":               {"depends=failover"},
		"kernel/drivers/net/virtio_net.ko":                 {"alias=virtio:d00000001v*", "depends=net_failover,virtio_ring,virtio", "name=virtio_net"},
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko":   {"depends="},
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko":   {"depends="},
		"kernel/drivers/virtio/virtio_pci.ko":              {"depends=virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio,virtio_ring"},
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko": {"depends="},
		"kernel/drivers/char/hw_random/virtio-rng.ko":      {"depends=virtio,virtio_ring"},
		"kernel/drivers/unrelated/unrelated.ko":            {"depends=virtio"},
		"kernel/drivers/needs_builtin.ko":                  {"depends=crc32c_generic"},
		"kernel/drivers/broken.ko":                         {"depends=not_there"},
	}
	for p, info := range mods {
		testenv.WriteFile(t, filepath.Join(dir, p), fakeKO(t, info...))
	}
	testenv.WriteFile(t, filepath.Join(dir, "modules.builtin"), []byte("kernel/crypto/crc32c_generic.ko\nkernel/drivers/tty/serial/8250.ko\n"))
}

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func TestResolveModulesModinfo(t *testing.T) {
	dir := t.TempDir()
	fakeModules(t, dir)
	tests := []struct {
		name        string
		req         []string
		wantLoad    []string
		wantBuiltin []string
	}{
		{"e1000 alone", []string{"e1000"}, []string{"e1000"}, nil},
		{"virtio-net, dependencies first",
			[]string{"virtio_net", "virtio_pci"},
			[]string{"failover", "net_failover", "virtio_ring", "virtio", "virtio_net", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}, nil},
		{"requested order kept, each module once",
			[]string{"e1000", "virtio_pci", "virtio_net"},
			[]string{"e1000", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_ring", "virtio_pci", "failover", "net_failover", "virtio_net"}, nil},
		{"dash and underscore are one", []string{"virtio-rng"}, []string{"virtio", "virtio_ring", "virtio_rng"}, nil},
		{"built-in requested", []string{"8250", "e1000"}, []string{"e1000"}, []string{"8250"}},
		{"built-in dependency", []string{"needs_builtin"}, []string{"needs_builtin"}, []string{"crc32c_generic"}},
		{"empty names skipped", []string{"", " e1000 "}, []string{"e1000"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ResolveModules(dir, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantLoad, names(set.Load)); diff != "" {
				t.Errorf("load order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantBuiltin, set.Builtin); diff != "" {
				t.Errorf("builtin (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveModulesErrors(t *testing.T) {
	dir := t.TempDir()
	fakeModules(t, dir)
	testenv.WriteFile(t, filepath.Join(dir, "kernel/cyc/cyc_a.ko"), fakeKO(t, "depends=cyc_b"))
	testenv.WriteFile(t, filepath.Join(dir, "kernel/cyc/cyc_b.ko"), fakeKO(t, "depends=cyc_a"))
	testenv.WriteFile(t, filepath.Join(dir, "kernel/bad/notelf.ko"), []byte("not an ELF file"))

	_, err := ResolveModules(dir, []string{"no_such_module"})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: got %v, want ErrModuleNotFound naming it", err)
	}
	_, err = ResolveModules(dir, []string{"broken"})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "needed by broken") {
		t.Errorf("missing dependency: got %v, want ErrModuleNotFound needed by broken", err)
	}
	if _, err = ResolveModules(dir, []string{"cyc_a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: got %v", err)
	}
	if _, err = ResolveModules(dir, []string{"notelf"}); err == nil {
		t.Error("a .ko that is not ELF: no error")
	}
}

func TestResolveModulesDep(t *testing.T) {
	dir := t.TempDir()
	// modules.dep wins over .modinfo: the files need not even be ELF.
	testenv.WriteFile(t, filepath.Join(dir, "modules.dep"), []byte(
		"kernel/a/a.ko: kernel/b/b.ko kernel/c/c.ko.xz\n"+
			"kernel/b/b.ko: kernel/c/c.ko.xz\n"+
			"kernel/c/c.ko.xz:\n"+
			"kernel/d/d.ko:\n"))
	set, err := ResolveModules(dir, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Module{
		{Name: "c", Path: "kernel/c/c.ko.xz"},
		{Name: "b", Path: "kernel/b/b.ko", Depends: []string{"c"}},
		{Name: "a", Path: "kernel/a/a.ko", Depends: []string{"b", "c"}},
	}
	if diff := cmp.Diff(want, set.Load); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestModulesDep(t *testing.T) {
	mods := []Module{
		{Name: "failover", Path: "kernel/net/core/failover.ko"},
		{Name: "net_failover", Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
		{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko"},
		{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"net_failover", "virtio", "crc_builtin"}},
	}
	want := "kernel/net/core/failover.ko:\n" +
		"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n" +
		"kernel/drivers/virtio/virtio.ko:\n" +
		"kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n"
	if diff := cmp.Diff(want, string(modulesDep(mods))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestResolveModulesRealKernel(t *testing.T) {
	kdir := testenv.Kernel(t)
	_, ver, err := FindKernel(kdir)
	if err != nil {
		t.Fatal(err)
	}
	modDir := filepath.Join(kdir, "lib", "modules", ver)
	requested := []string{"e1000", "virtio_net", "virtio_pci"}
	set, err := ResolveModules(modDir, requested)
	if err != nil {
		t.Fatal(err)
	}
	// make kernel fetches Debian's current kernel: what is checked holds
	// for any of them, not one kernel's order.
	builtinFile, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	builtin := map[string]bool{}
	for _, line := range strings.Fields(string(builtinFile)) {
		name, _, _ := strings.Cut(filepath.Base(line), ".")
		builtin[canonical(name)] = true
	}
	at := map[string]int{}
	for i, m := range set.Load {
		if _, dup := at[m.Name]; dup {
			t.Errorf("%s is loaded twice", m.Name)
		}
		at[m.Name] = i
		if builtin[m.Name] {
			t.Errorf("%s is built in, yet loaded", m.Name)
		}
		if fi, err := os.Stat(filepath.Join(modDir, m.Path)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %s is not a file of the kernel: %v", m.Name, m.Path, err)
		}
	}
	for _, b := range set.Builtin {
		if !builtin[b] {
			t.Errorf("%s is said built in, but modules.builtin does not list it", b)
		}
	}
	for i, m := range set.Load {
		for _, d := range m.Depends {
			if j, ok := at[d]; ok && j > i {
				t.Errorf("%s loads before %s, which it needs", m.Name, d)
			} else if !ok && !builtin[d] {
				t.Errorf("%s needs %s, which is neither loaded nor built in", m.Name, d)
			}
		}
	}
	// Nothing more than what was asked for and what that needs.
	needed := map[string]bool{}
	var need func(string)
	need = func(name string) {
		if needed[name] {
			return
		}
		needed[name] = true
		if i, ok := at[name]; ok {
			for _, d := range set.Load[i].Depends {
				need(d)
			}
		}
	}
	for _, r := range requested {
		if _, ok := at[r]; !ok && !builtin[r] {
			t.Errorf("%s was asked for, and is neither loaded nor built in", r)
		}
		need(r)
	}
	for _, m := range set.Load {
		if !needed[m.Name] {
			t.Errorf("%s is loaded, but nothing asked for needs it", m.Name)
		}
	}
	// The dependencies were read from the kernel's modules: virtio_net
	// uses virtqueues, which virtio_ring provides, in every kernel.
	if _, ok := at["virtio_net"]; ok && !builtin["virtio_ring"] && !needed["virtio_ring"] {
		t.Errorf("virtio_net, a module, does not need virtio_ring, a module: the dependencies were not read")
	}
	t.Logf("load order on %s: %v; built in: %v", ver, names(set.Load), set.Builtin)
}
