package vtestbed

import (
	"encoding/binary"
	"fmt"
	"os"
)

// SectorSize is the size of a BIOS boot sector.
const SectorSize = 512

// bootCode is a 16-bit real-mode program that SeaBIOS runs at 0000:7C00.
// It prints the message at its end (NUL-terminated) on the serial port
// COM1 (out to 0x3F8; QEMU's 16550 needs no set-up to transmit) and on the
// screen (int 10h, AH=0Eh, teletype), then powers the machine off through
// the ACPI PM1a control register (QEMU's pc and q35 machines both have it
// at 0x604 once SeaBIOS has set up PM at 0x600; SLP_EN with SLP_TYP 0 is
// S5), and halts should that do nothing.
//
// The two-byte placeholder at msgAddrOffset is the message's address.
var bootCode = []byte{
	0xFA,       // 00 cli
	0x31, 0xC0, // 01 xor ax, ax
	0x8E, 0xD8, // 03 mov ds, ax
	0x8E, 0xD0, // 05 mov ss, ax
	0xBC, 0x00, 0x7C, // 07 mov sp, 0x7C00
	0xFB,             // 0A sti
	0xFC,             // 0B cld
	0xBE, 0x00, 0x00, // 0C mov si, msg        (filled in)
	0xAC,       // 0F loop: lodsb
	0x84, 0xC0, // 10 test al, al
	0x74, 0x0D, // 12 jz done (0x21)
	0xBA, 0xF8, 0x03, // 14 mov dx, 0x3F8
	0xEE,       // 17 out dx, al
	0xB4, 0x0E, // 18 mov ah, 0x0E
	0xBB, 0x07, 0x00, // 1A mov bx, 0x0007
	0xCD, 0x10, // 1D int 0x10
	0xEB, 0xEE, // 1F jmp loop (0x0F)
	0xBA, 0x04, 0x06, // 21 done: mov dx, 0x604
	0xB8, 0x00, 0x20, // 24 mov ax, 0x2000
	0xEF,       // 27 out dx, ax
	0xFA,       // 28 hang: cli
	0xF4,       // 29 hlt
	0xEB, 0xFC, // 2A jmp hang (0x28)
}

const (
	msgAddrOffset = 0x0D   // the immediate of "mov si, msg"
	loadAddress   = 0x7C00 // where the BIOS loads the sector
	maxMessage    = SectorSize - 2 - 1 - 0x2C
)

// BootSector returns a 512-byte MBR boot sector that prints message, then
// CR LF, on COM1 and on the screen and then powers the machine off. The
// message must be printable ASCII of at most 463 bytes.
func BootSector(message string) ([]byte, error) {
	if len(message)+2 > maxMessage {
		return nil, fmt.Errorf("boot sector message of %d bytes: at most %d fit", len(message), maxMessage-2)
	}
	for _, r := range message {
		if r < 0x20 || r > 0x7E {
			return nil, fmt.Errorf("boot sector message %q: only printable ASCII", message)
		}
	}
	s := make([]byte, SectorSize)
	n := copy(s, bootCode)
	binary.LittleEndian.PutUint16(s[msgAddrOffset:], uint16(loadAddress+n))
	copy(s[n:], message+"\r\n")
	s[510], s[511] = 0x55, 0xAA
	return s, nil
}

// WriteDisk writes a raw disk image of size bytes at path: the boot
// sector, if not nil, then zeros (a sparse file). A disk without a boot
// sector is one SeaBIOS will not boot ("No bootable device.").
func WriteDisk(path string, size int64, bootSector []byte) error {
	if size < SectorSize {
		return fmt.Errorf("disk %s: %d bytes is less than a sector", path, size)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if bootSector != nil {
		if _, err := f.Write(bootSector); err != nil {
			f.Close()
			return fmt.Errorf("disk %s: %w", path, err)
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("disk %s: %w", path, err)
	}
	return f.Close()
}
