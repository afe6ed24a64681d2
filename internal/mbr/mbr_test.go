package mbr

import (
	"bytes"
	"errors"
	"testing"
)

// card is a sector with one bootable FAT32 (LBA) partition of 2048
// sectors at sector 8192, as Raspberry Pi OS lays out its boot partition.
func card() []byte {
	sec := make([]byte, SectorSize)
	sec[510], sec[511] = 0x55, 0xaa
	copy(sec[446:], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0x20, 0, 0, 0, 0x08, 0, 0})
	return sec
}

func TestBoot(t *testing.T) {
	img := append(card(), make([]byte, (8192+2048)*SectorSize)...)
	p, parts, err := Boot(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Partition{Index: 1, Type: 0x0c, Start: 8192 * SectorSize, Size: 2048 * SectorSize}); p != want || len(parts) != 1 {
		t.Errorf("Boot = %+v (of %d), want %+v", p, len(parts), want)
	}
	for name, tc := range map[string]struct {
		img  []byte
		want error
	}{
		"truncated":    {card(), ErrNoFAT},
		"no signature": {make([]byte, SectorSize), ErrNotMBR},
		"short":        {[]byte{1, 2, 3}, ErrNotMBR},
		"gpt":          {func() []byte { b := card(); b[446+4] = 0xee; return b }(), ErrGPT},
		"linux only":   {func() []byte { b := append(card(), make([]byte, (8192+2048)*SectorSize)...); b[446+4] = 0x83; return b }(), ErrNoFAT},
	} {
		if _, _, err := Boot(bytes.NewReader(tc.img), int64(len(tc.img))); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func FuzzParseMBR(f *testing.F) {
	sec := make([]byte, 512)
	sec[510], sec[511] = 0x55, 0xaa
	copy(sec[446:], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0x08, 0})
	f.Add(sec)
	gpt := bytes.Clone(sec)
	gpt[446+4] = 0xee
	f.Add(gpt)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := Parse(data)
		if err != nil {
			return
		}
		if len(parts) == 0 || len(parts) > 4 {
			t.Fatalf("%d partitions", len(parts))
		}
		for _, p := range parts {
			if p.Index < 1 || p.Index > 4 || p.Type == 0 || p.Size == 0 {
				t.Fatalf("bad partition %+v", p)
			}
		}
		_, _, _ = Boot(bytes.NewReader(data), int64(len(data)))
	})
}
