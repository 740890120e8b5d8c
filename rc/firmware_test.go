package rc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/proto"
)

func TestLocalFirmware(t *testing.T) {
	attrs := "\x06\x00\x00\x00" // NV|BS|RT, as the firmware sets them
	tests := []struct {
		name     string
		files    map[string]string // under efiDir; nil: no efiDir at all
		firmware string
		sb       string // on, off, unknown
	}{
		{"bios", nil, proto.FirmwareBIOS, "off"},
		{"uefi secure boot on", map[string]string{"efivars/" + secureBootVar: attrs + "\x01"}, proto.FirmwareUEFI, "on"},
		{"uefi secure boot off", map[string]string{"efivars/" + secureBootVar: attrs + "\x00"}, proto.FirmwareUEFI, "off"},
		{"efivarfs not mounted", map[string]string{"runtime": ""}, proto.FirmwareUEFI, "unknown"},
		{"other variables only", map[string]string{"efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c": attrs + "\x01"}, proto.FirmwareUEFI, "unknown"},
		{"attributes only", map[string]string{"efivars/" + secureBootVar: attrs}, proto.FirmwareUEFI, "unknown"},
		{"too long", map[string]string{"efivars/" + secureBootVar: attrs + "\x01\x00"}, proto.FirmwareUEFI, "unknown"},
		{"not a boolean", map[string]string{"efivars/" + secureBootVar: attrs + "\x02"}, proto.FirmwareUEFI, "unknown"},
		{"attributes say nothing", map[string]string{"efivars/" + secureBootVar: "\x01\x01\x01\x01\x00"}, proto.FirmwareUEFI, "off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			efi := filepath.Join(t.TempDir(), "efi")
			if tt.files != nil {
				if err := os.Mkdir(efi, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for p, body := range tt.files {
				testenv.WriteFile(t, filepath.Join(efi, p), body)
			}
			fw, sb := localFirmware(efi)
			got := "unknown"
			if sb != nil && *sb {
				got = "on"
			} else if sb != nil {
				got = "off"
			}
			if fw != tt.firmware || got != tt.sb {
				t.Errorf("localFirmware = %q, secure boot %s; want %q, %s", fw, got, tt.firmware, tt.sb)
			}
		})
	}
}
