// Package mbr reads the MBR partition table of a disk image: the layout of
// a Raspberry Pi OS card (a FAT32 boot partition, then the root file
// system). cmd/iotimage prepares such cards; package vm boots them.
package mbr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Why an image is refused; test with errors.Is.
var (
	ErrNotMBR = errors.New("not an MBR disk image")
	ErrGPT    = errors.New("a GPT disk (only a protective MBR)")
	ErrNoFAT  = errors.New("no FAT partition")
)

// SectorSize is the MBR's sector size in bytes.
const SectorSize = 512

// Partition is one primary entry of an MBR partition table.
type Partition struct {
	Index int    // 1-based, as Linux numbers them (mmcblk0p1)
	Type  byte   // 0x0c is FAT32 with LBA, as Raspberry Pi OS's bootfs
	Start uint64 // in bytes
	Size  uint64 // in bytes
}

func (p Partition) String() string {
	return fmt.Sprintf("partition %d (type 0x%02x, %d MiB at byte %d)", p.Index, p.Type, p.Size>>20, p.Start)
}

// FATTypes are the MBR partition types of FAT file systems.
var FATTypes = map[byte]string{0x01: "FAT12", 0x04: "FAT16", 0x06: "FAT16", 0x0b: "FAT32", 0x0c: "FAT32 (LBA)", 0x0e: "FAT16 (LBA)"}

// Parse reads the four primary entries of the MBR in the first sector.
// Empty entries are left out. It refuses a sector without the 0x55AA
// signature (ErrNotMBR) and a protective MBR of a GPT disk (ErrGPT).
func Parse(sector []byte) ([]Partition, error) {
	if len(sector) < SectorSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than one sector", ErrNotMBR, len(sector))
	}
	if sector[510] != 0x55 || sector[511] != 0xaa {
		return nil, fmt.Errorf("%w: no boot signature 55 aa at byte 510 (found %02x %02x)", ErrNotMBR, sector[510], sector[511])
	}
	var parts []Partition
	for i := range 4 {
		e := sector[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return nil, fmt.Errorf("%w: partition entry %d has status 0x%02x (want 0x00 or 0x80)", ErrNotMBR, i+1, e[0])
		}
		typ := e[4]
		lba := binary.LittleEndian.Uint32(e[8:])
		n := binary.LittleEndian.Uint32(e[12:])
		if typ == 0 || n == 0 {
			continue
		}
		if typ == 0xee {
			return nil, fmt.Errorf("%w: partition entry %d is of type 0xee", ErrGPT, i+1)
		}
		parts = append(parts, Partition{Index: i + 1, Type: typ, Start: uint64(lba) * SectorSize, Size: uint64(n) * SectorSize})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: the partition table is empty", ErrNotMBR)
	}
	return parts, nil
}

// Boot finds the boot partition in the image r of size bytes:
// the first FAT partition of its MBR that lies inside the image.
func Boot(r io.ReaderAt, size int64) (Partition, []Partition, error) {
	sector := make([]byte, SectorSize)
	if _, err := r.ReadAt(sector, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return Partition{}, nil, fmt.Errorf("%w: %d bytes, shorter than one sector", ErrNotMBR, size)
		}
		return Partition{}, nil, fmt.Errorf("read the partition table: %w", err)
	}
	parts, err := Parse(sector)
	if err != nil {
		return Partition{}, nil, err
	}
	for _, p := range parts {
		if _, ok := FATTypes[p.Type]; !ok {
			continue
		}
		if p.Start+p.Size > uint64(size) {
			return p, parts, fmt.Errorf("%w: %s ends at byte %d, past the end of the %d-byte image (truncated?)", ErrNoFAT, p, p.Start+p.Size, size)
		}
		return p, parts, nil
	}
	var found []string
	for _, p := range parts {
		found = append(found, p.String())
	}
	return Partition{}, parts, fmt.Errorf("%w: found %s", ErrNoFAT, joinAnd(found))
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return "nothing"
	case 1:
		return s[0]
	}
	out := ""
	for i, x := range s {
		switch {
		case i == 0:
		case i == len(s)-1:
			out += " and "
		default:
			out += ", "
		}
		out += x
	}
	return out
}
