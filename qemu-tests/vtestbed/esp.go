package vtestbed

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"unicode/utf16"
)

// Debian's signed loaders (packages shim-signed, grub-efi-amd64-signed).
const (
	// Shim is shim signed by Microsoft's UEFI CA.
	Shim = "/usr/lib/shim/shimx64.efi.signed"
	// GrubNet is Debian's signed network GRUB, which the TFTP root serves
	// as grubx64.efi (shim asks for that name beside itself).
	GrubNet = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	// GrubDisk is Debian's signed GRUB for a disk's EFI system partition:
	// it reads EFI/debian/grub.cfg from the partition it was loaded from.
	GrubDisk = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
)

// ESPMarkerFiles are the files of an EFI system partition that boots, with
// Secure Boot on, the way an installed Debian does: the firmware's default
// path EFI/BOOT/BOOTX64.EFI is shim, which loads the signed GRUB beside
// it, which reads EFI/debian/grub.cfg: that prints marker on the console
// (OVMF copies it to the serial port) and powers the machine off.
func ESPMarkerFiles(marker string) (map[string][]byte, error) {
	shim, err := os.ReadFile(Shim)
	if err != nil {
		return nil, err
	}
	grub, err := os.ReadFile(GrubDisk)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("echo %q\nsleep 1\nhalt\n", marker)
	return map[string][]byte{
		"EFI/BOOT/BOOTX64.EFI": shim,
		"EFI/BOOT/grubx64.efi": grub,
		"EFI/debian/grub.cfg":  []byte(cfg),
	}, nil
}

// ESP partition layout: the partition starts at 1 MiB, as partitioners
// align it; the GPT's backup takes the last 33 sectors.
const (
	espStart  = 1 << 20
	gptSector = 512
	gptTail   = 33 * gptSector
)

// ESPDisk returns a raw disk image of size bytes: a GPT (protective MBR,
// primary and backup headers) whose one partition is an EFI system
// partition from 1 MiB to the end, a FAT file system (made with mtools'
// mformat, filled with mcopy) holding files (slash-separated paths).
func ESPDisk(size int64, files map[string][]byte) ([]byte, error) {
	if size < 4<<20 || size%gptSector != 0 {
		return nil, fmt.Errorf("ESP disk of %d bytes: want at least 4 MiB, whole sectors", size)
	}
	partSize := (size - espStart - gptTail) / gptSector * gptSector
	fat, err := fatImage(partSize, files)
	if err != nil {
		return nil, err
	}
	disk := make([]byte, size)
	copy(disk[espStart:], fat)
	if err := writeGPT(disk, espStart/gptSector, (espStart+partSize)/gptSector-1); err != nil {
		return nil, err
	}
	return disk, nil
}

// fatImage makes a FAT file system of size bytes with files in it.
func fatImage(size int64, files map[string][]byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "vtb-esp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "esp.img")
	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %w\n%s", name, args, err, out)
		}
		return nil
	}
	if err := run("mformat", "-C", "-i", img, "-T", fmt.Sprint(size/gptSector), "-v", "ESP", "::"); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	made := map[string]bool{}
	for _, name := range names {
		for d := path.Dir(name); d != "." && !made[d]; d = path.Dir(d) {
			made[d] = true
		}
	}
	dirs := make([]string, 0, len(made))
	for d := range made {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs) // parents before children
	for _, d := range dirs {
		if err := run("mmd", "-i", img, "::"+d); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		src := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(src, files[name], 0o644); err != nil {
			return nil, err
		}
		if err := run("mcopy", "-i", img, src, "::"+name); err != nil {
			return nil, err
		}
	}
	fat, err := os.ReadFile(img)
	if err != nil {
		return nil, err
	}
	if int64(len(fat)) != size {
		return nil, fmt.Errorf("mformat made %d bytes, want %d", len(fat), size)
	}
	return fat, nil
}

// espType is the EFI system partition's type GUID,
// C12A7328-F81F-11D2-BA4B-00A0C93EC93B, as GPT stores it (the first three
// fields little-endian).
var espType = [16]byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}

// writeGPT writes into disk a protective MBR and a GPT, primary and
// backup, with one partition: the EFI system partition from sector first
// to sector last.
func writeGPT(disk []byte, first, last int64) error {
	sectors := int64(len(disk)) / gptSector
	const entries, entrySize = 128, 128
	tableSectors := int64(entries * entrySize / gptSector) // 32
	if first < 2+tableSectors || last > sectors-2-tableSectors || last < first {
		return errors.New("gpt: partition outside the usable sectors")
	}
	// Protective MBR: one partition of type 0xEE over the whole disk.
	mbr := disk[:gptSector]
	pe := mbr[446:462]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00 // CHS of sector 1
	pe[4] = 0xEE
	pe[5], pe[6], pe[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA

	table := make([]byte, entries*entrySize)
	copy(table[0:16], espType[:])
	var unique, diskGUID [16]byte
	if _, err := rand.Read(unique[:]); err != nil {
		return err
	}
	if _, err := rand.Read(diskGUID[:]); err != nil {
		return err
	}
	copy(table[16:32], unique[:])
	binary.LittleEndian.PutUint64(table[32:], uint64(first))
	binary.LittleEndian.PutUint64(table[40:], uint64(last))
	name := utf16.Encode([]rune("EFI System Partition"))
	for i, c := range name {
		binary.LittleEndian.PutUint16(table[56+2*i:], c)
	}
	tableCRC := crc32.ChecksumIEEE(table)

	header := func(self, other, tableLBA int64) []byte {
		var h bytes.Buffer
		h.WriteString("EFI PART")
		le := func(v any) { _ = binary.Write(&h, binary.LittleEndian, v) }
		le(uint32(0x00010000)) // revision 1.0
		le(uint32(92))         // header size
		le(uint32(0))          // header CRC, filled in below
		le(uint32(0))
		le(uint64(self))
		le(uint64(other))
		le(uint64(2 + tableSectors))           // first usable
		le(uint64(sectors - 2 - tableSectors)) // last usable
		h.Write(diskGUID[:])
		le(uint64(tableLBA))
		le(uint32(entries))
		le(uint32(entrySize))
		le(tableCRC)
		b := h.Bytes()
		binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b))
		return b
	}
	lastLBA := sectors - 1
	copy(disk[1*gptSector:], header(1, lastLBA, 2))
	copy(disk[2*gptSector:], table)
	backupTable := lastLBA - tableSectors
	copy(disk[backupTable*gptSector:], table)
	copy(disk[lastLBA*gptSector:], header(lastLBA, 1, backupTable))
	return nil
}
