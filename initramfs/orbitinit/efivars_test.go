package orbitinit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestMountEFIVars(t *testing.T) {
	errNoFS := errors.New("no such device")
	tests := []struct {
		name      string
		uefi      bool  // efiDir exists
		mountErr  error // what mount returns
		wantMount bool  // mount was called on efiDir/efivars
		want      bool
		wantErr   bool
	}{
		{"bios: nothing to mount", false, nil, false, false, false},
		{"uefi: mounted", true, nil, true, true, false},
		{"uefi without efivarfs in the kernel", true, errNoFS, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			efi := filepath.Join(t.TempDir(), "efi")
			if tt.uefi {
				if err := os.MkdirAll(filepath.Join(efi, "efivars"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var target string
			got, err := mountEFIVars(efi, func(p string) error { target = p; return tt.mountErr })
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("mountEFIVars = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if tt.mountErr != nil && !errors.Is(err, tt.mountErr) {
				t.Errorf("error %v does not wrap the mount's %v", err, tt.mountErr)
			}
			if want := filepath.Join(efi, "efivars"); tt.wantMount != (target == want) {
				t.Errorf("mounted on %q; want a mount on %s: %v", target, want, tt.wantMount)
			}
		})
	}
}
