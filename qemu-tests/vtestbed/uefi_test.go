package vtestbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/modroot"
)

func TestUEFIArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		u        UEFI
		vars     string
		want     []string
		wantNone string
	}{
		{"Secure Boot, PXE", UEFI{SecureBoot: true}, OVMFVarsMS,
			[]string{"-machine q35,smm=on", "file=" + OVMFCode, "unit=1,file=/v.fd", "-fw_cfg name=opt/org.tianocore/IPv6Support,string=n"}, "PXESupport"},
		{"no Secure Boot, HTTP Boot only", UEFI{HTTPBoot: true}, OVMFVars,
			[]string{"file=" + OVMFCode, "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n", "-fw_cfg name=opt/org.tianocore/IPv6Support,string=n"}, "ms.fd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.u.varsTemplate(); got != tc.vars {
				t.Errorf("variable store %s, want %s", got, tc.vars)
			}
			got := strings.Join(tc.u.args("/v.fd"), " ")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("args lack %q:\n%s", w, got)
				}
			}
			if strings.Contains(got, tc.wantNone) {
				t.Errorf("args have %q:\n%s", tc.wantNone, got)
			}
		})
	}
}

// TestInstallUEFILoadersScript runs scripts/install-uefi-loaders.sh on
// stand-in loaders: it installs both under the names the node asks for,
// does nothing the second time, replaces a changed source's copy, and
// refuses a missing root.
func TestInstallUEFILoadersScript(t *testing.T) {
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	src, tftp := t.TempDir(), t.TempDir()
	shim, grub := filepath.Join(src, "shim"), filepath.Join(src, "grub")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(shim, "shim 1")
	write(grub, "grub 1")
	run := func(dir string) (string, error) {
		cmd := exec.Command(filepath.Join(root, "scripts", "install-uefi-loaders.sh"), dir)
		cmd.Env = append(os.Environ(), "SHIM="+shim, "GRUB="+grub)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	check := func(step, wantShim, wantGrub string) {
		t.Helper()
		for name, want := range map[string]string{"shimx64.efi": wantShim, "grubx64.efi": wantGrub} {
			if b, err := os.ReadFile(filepath.Join(tftp, name)); err != nil || string(b) != want {
				t.Errorf("%s: %s = %q, %v; want %q", step, name, b, err, want)
			}
		}
		if entries, _ := os.ReadDir(tftp); len(entries) != 2 {
			t.Errorf("%s: %d files in the TFTP root, want the 2 loaders alone", step, len(entries))
		}
	}
	if out, err := run(tftp); err != nil || strings.Count(out, "<-") != 2 {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	check("first run", "shim 1", "grub 1")
	if out, err := run(tftp); err != nil || out != "" {
		t.Errorf("second run: %v, said %q; want nothing done", err, out)
	}
	write(grub, "grub 2")
	if out, err := run(tftp); err != nil || !strings.Contains(out, "grubx64.efi <-") || strings.Contains(out, "shimx64.efi <-") {
		t.Errorf("after a GRUB upgrade: %v\n%s", err, out)
	}
	check("after a GRUB upgrade", "shim 1", "grub 2")
	if out, err := run(filepath.Join(tftp, "none")); err == nil {
		t.Errorf("a missing TFTP root was accepted:\n%s", out)
	}
}
