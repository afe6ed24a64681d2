package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// fat32Fix corrects what go-diskfs v1.9.4 leaves wrong on a FAT32 file
// system it wrote, so that fsck.fat finds nothing: the ".." entry of a
// directory in the root must name cluster 0 (go-diskfs writes the root's
// cluster), clusters its writes and removals leave allocated but reachable
// from no file are freed, and the FSInfo sector's free cluster count and
// next free hint are recomputed. It reports what it changed.
type fat32Fix struct {
	at    io.ReaderAt
	wa    io.WriterAt
	start int64

	bps, spc            int64
	reserved, numFATs   int64
	fatSz, rootClus     uint32
	fsInfo              int64
	fatStart, dataStart int64
	nClusters           uint32
	fat                 []uint32
}

type rwAt interface {
	io.ReaderAt
	io.WriterAt
}

// errBadFAT is a FAT32 file system whose structure does not add up.
var errBadFAT = errors.New("damaged FAT32 file system")

// readFAT32 reads the FAT32 file system of size bytes at start in f.
func readFAT32(f rwAt, start, size int64) (*fat32Fix, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, start); err != nil {
		return nil, fmt.Errorf("read the boot sector: %w", err)
	}
	x := &fat32Fix{at: f, wa: f, start: start,
		bps: int64(binary.LittleEndian.Uint16(bs[11:])), spc: int64(bs[13]),
		reserved: int64(binary.LittleEndian.Uint16(bs[14:])), numFATs: int64(bs[16]),
		fatSz: binary.LittleEndian.Uint32(bs[36:]), rootClus: binary.LittleEndian.Uint32(bs[44:]),
		fsInfo: int64(binary.LittleEndian.Uint16(bs[48:])),
	}
	tot := int64(binary.LittleEndian.Uint32(bs[32:]))
	if x.bps != 512 || x.spc == 0 || x.numFATs == 0 || x.fatSz == 0 || x.reserved == 0 {
		return nil, fmt.Errorf("%w: boot sector says %d bytes per sector, %d sectors per cluster, %d FATs of %d sectors", errBadFAT, x.bps, x.spc, x.numFATs, x.fatSz)
	}
	x.fatStart = start + x.reserved*x.bps
	x.dataStart = x.fatStart + x.numFATs*int64(x.fatSz)*x.bps
	dataSectors := tot - x.reserved - x.numFATs*int64(x.fatSz)
	if dataSectors <= 0 || int64(x.fatSz)*x.bps/4 < dataSectors/x.spc+2 || x.rootClus < 2 {
		return nil, fmt.Errorf("%w: %d sectors do not hold the FATs and data", errBadFAT, tot)
	}
	if tot*x.bps > size {
		return nil, fmt.Errorf("%w: its %d sectors do not fit in the %d-byte partition", errBadFAT, tot, size)
	}
	x.nClusters = uint32(dataSectors / x.spc)
	raw := make([]byte, int64(x.nClusters+2)*4)
	if _, err := f.ReadAt(raw, x.fatStart); err != nil {
		return nil, fmt.Errorf("read the FAT: %w", err)
	}
	x.fat = make([]uint32, x.nClusters+2)
	for i := range x.fat {
		x.fat[i] = binary.LittleEndian.Uint32(raw[4*i:]) & 0x0fffffff
	}
	return x, nil
}

// chain is the cluster chain from c, bounded by the cluster count.
func (x *fat32Fix) chain(c uint32) ([]uint32, error) {
	var out []uint32
	for c >= 2 && c < 0x0ffffff8 {
		if c >= uint32(len(x.fat)) || len(out) > len(x.fat) {
			return nil, fmt.Errorf("%w: cluster chain runs to cluster %d (of %d), or loops", errBadFAT, c, len(x.fat))
		}
		out = append(out, c)
		c = x.fat[c]
	}
	return out, nil
}

func (x *fat32Fix) clusterOffset(c uint32) int64 {
	return x.dataStart + int64(c-2)*x.spc*x.bps
}

// fix walks the tree from the root, corrects ".." entries, frees
// unreachable clusters and rewrites FSInfo. It returns what it changed.
func (x *fat32Fix) fix() ([]string, error) {
	var changes []string
	reach := make([]bool, len(x.fat))
	var walk func(dir, parent uint32, depth int) error
	walk = func(dir, parent uint32, depth int) error {
		if depth > 32 {
			return fmt.Errorf("%w: directories nested over 32 deep", errBadFAT)
		}
		cl, err := x.chain(dir)
		if err != nil {
			return err
		}
		for _, c := range cl {
			if reach[c] {
				return fmt.Errorf("%w: cluster %d belongs to two files", errBadFAT, c)
			}
			reach[c] = true
		}
		size := x.spc * x.bps
		for _, c := range cl {
			buf := make([]byte, size)
			if _, err := x.at.ReadAt(buf, x.clusterOffset(c)); err != nil {
				return fmt.Errorf("read directory cluster %d: %w", c, err)
			}
			dirty := false
			for off := 0; off+32 <= len(buf); off += 32 {
				e := buf[off : off+32]
				if e[0] == 0 {
					break
				}
				attr := e[11]
				if e[0] == 0xe5 || attr == 0x0f || attr&0x08 != 0 {
					continue
				}
				first := uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:]))
				name := string(e[:11])
				switch name {
				case ".          ":
					continue
				case "..         ":
					want := parent
					if parent == x.rootClus {
						want = 0
					}
					if first != want {
						binary.LittleEndian.PutUint16(e[20:], uint16(want>>16))
						binary.LittleEndian.PutUint16(e[26:], uint16(want))
						dirty = true
						changes = append(changes, fmt.Sprintf("'..' of the directory at cluster %d: cluster %d -> %d", dir, first, want))
					}
					continue
				}
				if attr&0x10 != 0 {
					if err := walk(first, dir, depth+1); err != nil {
						return err
					}
					continue
				}
				fc, err := x.chain(first)
				if err != nil {
					return err
				}
				for _, c := range fc {
					if reach[c] {
						return fmt.Errorf("%w: cluster %d belongs to two files", errBadFAT, c)
					}
					reach[c] = true
				}
			}
			if dirty {
				if _, err := x.wa.WriteAt(buf, x.clusterOffset(c)); err != nil {
					return fmt.Errorf("write directory cluster %d: %w", c, err)
				}
			}
		}
		return nil
	}
	if err := walk(x.rootClus, 0, 0); err != nil {
		return changes, err
	}
	freed := 0
	free, next := uint32(0), uint32(0xffffffff)
	var dirty []uint32
	for c := uint32(2); c < uint32(len(x.fat)); c++ {
		if x.fat[c] != 0 && !reach[c] && x.fat[c] != 0x0ffffff7 { // keep bad-cluster marks
			x.fat[c] = 0
			dirty = append(dirty, c)
			freed++
		}
		if x.fat[c] == 0 {
			free++
			if next == 0xffffffff {
				next = c
			}
		}
	}
	if freed > 0 {
		changes = append(changes, fmt.Sprintf("freed %d lost clusters", freed))
		var b [4]byte
		for _, c := range dirty {
			binary.LittleEndian.PutUint32(b[:], 0) // upper 4 bits of a free entry: 0 as mkfs.fat writes
			for i := int64(0); i < x.numFATs; i++ {
				if _, err := x.wa.WriteAt(b[:], x.fatStart+i*int64(x.fatSz)*x.bps+int64(c)*4); err != nil {
					return changes, fmt.Errorf("write the FAT: %w", err)
				}
			}
		}
	}
	if x.fsInfo > 0 && x.fsInfo < x.reserved {
		fi := make([]byte, 512)
		off := x.start + x.fsInfo*x.bps
		if _, err := x.at.ReadAt(fi, off); err != nil {
			return changes, fmt.Errorf("read FSInfo: %w", err)
		}
		if binary.LittleEndian.Uint32(fi[0:]) == 0x41615252 && binary.LittleEndian.Uint32(fi[484:]) == 0x61417272 {
			oldFree, oldNext := binary.LittleEndian.Uint32(fi[488:]), binary.LittleEndian.Uint32(fi[492:])
			changed := false
			// The next-free hint is only a hint: kept unless out of range.
			if oldNext != 0xffffffff && (oldNext < 2 || oldNext >= uint32(len(x.fat))) {
				binary.LittleEndian.PutUint32(fi[492:], next)
				changes = append(changes, fmt.Sprintf("FSInfo next free cluster %d -> %d", oldNext, next))
				changed = true
			}
			if oldFree != free {
				binary.LittleEndian.PutUint32(fi[488:], free)
				changes = append(changes, fmt.Sprintf("FSInfo free clusters %d -> %d", oldFree, free))
				changed = true
			}
			if changed {
				if _, err := x.wa.WriteAt(fi, off); err != nil {
					return changes, fmt.Errorf("write FSInfo: %w", err)
				}
			}
		}
	}
	return changes, nil
}
