// Package boltscan reads a bbolt database file on its own, without bbolt
// and without ever panicking or faulting, to tell whether the file is
// sound and to salvage what still reads from one that is not.
//
// bbolt trusts its file: a torn or damaged page makes it return
// ErrInvalid, panic ("invalid freelist page", "page 7 already freed") or
// fault on a page past the end of a truncated file. Scan checks what bbolt
// would touch (the meta pages, every page of every bucket's tree, the
// freelist page) against the file's size with bounds-checked reads, and
// optionally collects every key and value it can reach, bucket by bucket.
// A subtree under a page that does not read is skipped and its bucket
// marked Incomplete; the rest is kept.
//
// The layout read here is bbolt's file format version 2 (bbolt 1.3 to
// 1.5), little-endian, as on every platform the agent runs on.
package boltscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

const (
	magic        = 0xED0CDAED
	version      = 2
	pageHeader   = 16 // id u64, flags u16, count u16, overflow u32
	elemSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	metaSize     = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	bucketHeader = 16 // root pgid, sequence

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	bucketLeaf   = 0x01

	maxDepth     = 64
	maxPageBytes = 64 << 20 // one page with its overflow
)

// ErrNoMeta: neither meta page is valid; nothing can be read.
var ErrNoMeta = errors.New("boltscan: no valid meta page")

// KV is a key and its value.
type KV struct{ Key, Value []byte }

// Bucket is what Scan reached of one bucket.
type Bucket struct {
	Name     []byte
	Sequence uint64
	KVs      []KV // when collecting; in key order as far as the tree is
	Buckets  []*Bucket
	// Incomplete is set when part of the bucket's tree could not be read:
	// an unknown number of keys may be missing.
	Incomplete bool
	// Unreadable counts the keys whose element lay outside its page: each
	// is one key lost.
	Unreadable int
}

// Report is what Scan found.
type Report struct {
	PageSize int
	TxID     uint64
	// Problems are the structural faults found, each naming the page; none
	// means that the file is sound as far as Scan can tell.
	Problems []string
	// Root holds the top-level buckets (Root.KVs is empty in bbolt).
	Root Bucket
	// OneMeta is set when only one of the two meta pages is valid: if the
	// other was the newer, the last transaction is not in what Scan read.
	OneMeta bool
}

// Sound reports whether no problem was found.
func (r *Report) Sound() bool { return len(r.Problems) == 0 }

type meta struct {
	pageSize           uint32
	root, seq          uint64
	freelist, hwm, txn uint64
}

type scanner struct {
	r       io.ReaderAt
	size    int64
	psz     int
	hwm     uint64
	collect bool
	rep     *Report
	seen    map[uint64]bool
	free    map[uint64]bool
	bufs    [][]byte // per depth; see buffer
}

// Scan reads the bbolt file r of size bytes. With collect it keeps every
// key and value it reaches. It returns ErrNoMeta (with a report listing
// why) when no meta page is valid.
func Scan(r io.ReaderAt, size int64, collect bool) (*Report, error) {
	rep := &Report{}
	m, ok := readMetas(r, size, rep)
	if !ok {
		return rep, ErrNoMeta
	}
	s := &scanner{r: r, size: size, psz: int(m.pageSize), hwm: m.hwm, collect: collect, rep: rep, seen: map[uint64]bool{}}
	rep.PageSize, rep.TxID = s.psz, m.txn
	if need := int64(m.hwm) * int64(s.psz); need > size {
		s.problem("the file is %d bytes, shorter than its %d pages (%d bytes): truncated", size, m.hwm, need)
	}
	if m.freelist != 0xFFFFFFFFFFFFFFFF { // PgidNoFreelist: not synced
		s.checkFreelist(m.freelist)
	}
	rep.Root.Sequence = m.seq
	s.walk(&rep.Root, m.root, 0)
	return rep, nil
}

func (s *scanner) problem(format string, args ...any) {
	if len(s.rep.Problems) < 100 {
		s.rep.Problems = append(s.rep.Problems, fmt.Sprintf(format, args...))
	}
}

// readMetas picks the valid meta page with the highest transaction id, as
// bbolt does. Page 1 is looked for where page 0 says, or else at every
// page size bbolt may have used. An invalid meta page is a problem even
// when the other one is valid: it was the newer one if a write tore it,
// and bbolt would then silently drop the last transaction.
func readMetas(r io.ReaderAt, size int64, rep *Report) (meta, bool) {
	m0, err0 := readMeta(r, 0)
	if err0 != nil {
		rep.Problems = append(rep.Problems, "meta page 0: "+err0.Error())
	}
	var m1 meta
	err1 := errors.New("not found")
	if err0 == nil {
		m1, err1 = readMeta(r, int64(m0.pageSize))
	} else {
		for i := 0; i <= 14 && err1 != nil; i++ {
			off := int64(1024) << i
			if off+pageHeader+metaSize > size {
				break
			}
			if m, err := readMeta(r, off); err == nil && int64(m.pageSize) == off {
				m1, err1 = m, nil
			}
		}
	}
	if err1 == nil && err0 == nil && m1.pageSize != m0.pageSize {
		err1 = fmt.Errorf("page size %d, page 0 says %d", m1.pageSize, m0.pageSize)
	}
	if err1 != nil {
		rep.Problems = append(rep.Problems, "meta page 1: "+err1.Error())
	}
	rep.OneMeta = (err0 == nil) != (err1 == nil)
	switch {
	case err0 == nil && (err1 != nil || m0.txn >= m1.txn):
		return m0, true
	case err1 == nil:
		return m1, true
	}
	return meta{}, false
}

func readMeta(r io.ReaderAt, off int64) (meta, error) {
	var b [pageHeader + metaSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return meta{}, fmt.Errorf("read: %w", err)
	}
	if binary.LittleEndian.Uint16(b[8:10]) != flagMeta {
		return meta{}, errors.New("not a meta page")
	}
	m := b[pageHeader:]
	h := fnv.New64a()
	h.Write(m[:56])
	switch {
	case binary.LittleEndian.Uint32(m[0:4]) != magic:
		return meta{}, errors.New("bad magic")
	case binary.LittleEndian.Uint32(m[4:8]) != version:
		return meta{}, errors.New("unknown version")
	case h.Sum64() != binary.LittleEndian.Uint64(m[56:64]):
		return meta{}, errors.New("bad checksum")
	}
	mt := meta{
		pageSize: binary.LittleEndian.Uint32(m[8:12]),
		root:     binary.LittleEndian.Uint64(m[16:24]),
		seq:      binary.LittleEndian.Uint64(m[24:32]),
		freelist: binary.LittleEndian.Uint64(m[32:40]),
		hwm:      binary.LittleEndian.Uint64(m[40:48]),
		txn:      binary.LittleEndian.Uint64(m[48:56]),
	}
	if mt.pageSize < 512 || mt.pageSize > 1<<24 || mt.pageSize&(mt.pageSize-1) != 0 {
		return meta{}, fmt.Errorf("page size %d", mt.pageSize)
	}
	return mt, nil
}

// page reads page id with its overflow pages, checking that it lies
// within the high-water mark and the file, and that its header names it.
func (s *scanner) page(id uint64, depth int) ([]byte, error) {
	if id < 2 || id >= s.hwm {
		return nil, fmt.Errorf("page %d: out of range (high-water mark %d)", id, s.hwm)
	}
	off := int64(id) * int64(s.psz)
	var h [pageHeader]byte
	if off+pageHeader > s.size {
		return nil, fmt.Errorf("page %d: past the end of the file (offset %d, size %d)", id, off, s.size)
	}
	if _, err := s.r.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(h[0:8]); got != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(h[12:16]))
	n := (overflow + 1) * uint64(s.psz)
	if id+overflow >= s.hwm || n > maxPageBytes {
		return nil, fmt.Errorf("page %d: overflow %d out of range", id, overflow)
	}
	if off+int64(n) > s.size {
		return nil, fmt.Errorf("page %d: past the end of the file (%d bytes from offset %d, size %d)", id, n, off, s.size)
	}
	b := s.buffer(depth, int(n))
	if _, err := s.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

func (s *scanner) checkFreelist(id uint64) {
	p, err := s.page(id, 0)
	if err != nil {
		s.problem("freelist: %v", err)
		return
	}
	if f := binary.LittleEndian.Uint16(p[8:10]); f != flagFreelist {
		s.problem("freelist page %d: flags %#x, not a freelist page", id, f)
		return
	}
	s.seen[id] = true
	count, at := uint64(binary.LittleEndian.Uint16(p[10:12])), pageHeader
	if count == 0xFFFF {
		if len(p) < pageHeader+8 {
			s.problem("freelist page %d: too short", id)
			return
		}
		count, at = binary.LittleEndian.Uint64(p[pageHeader:]), pageHeader+8
	}
	if count > uint64(len(p)-at)/8 {
		s.problem("freelist page %d: %d ids do not fit", id, count)
		return
	}
	free := map[uint64]bool{}
	for i := uint64(0); i < count; i++ {
		fid := binary.LittleEndian.Uint64(p[at+int(i)*8:])
		switch {
		case fid < 2 || fid >= s.hwm:
			s.problem("freelist page %d: free page %d out of range", id, fid)
			return
		case free[fid]:
			s.problem("freelist page %d: page %d freed twice", id, fid)
			return
		}
		free[fid] = true
	}
	s.free = free
}

// walk reads the tree of bucket b rooted at page id (0 for an inline
// bucket, whose page is b's inline data).
func (s *scanner) walk(b *Bucket, id uint64, depth int) {
	p, err := s.page(id, depth)
	if err != nil {
		s.problem("bucket %q: %v", b.Name, err)
		b.Incomplete = true
		return
	}
	if s.seen[id] {
		s.problem("bucket %q: page %d reached twice", b.Name, id)
		b.Incomplete = true
		return
	}
	s.seen[id] = true
	if s.free[id] {
		s.problem("bucket %q: page %d is in use and on the freelist", b.Name, id)
	}
	s.node(b, p, id, depth)
}

func (s *scanner) node(b *Bucket, p []byte, id uint64, depth int) {
	if depth > maxDepth {
		s.problem("bucket %q: page %d: tree deeper than %d", b.Name, id, maxDepth)
		b.Incomplete = true
		return
	}
	flags, count := binary.LittleEndian.Uint16(p[8:10]), int(binary.LittleEndian.Uint16(p[10:12]))
	if pageHeader+count*elemSize > len(p) {
		s.problem("bucket %q: page %d: %d elements do not fit", b.Name, id, count)
		b.Incomplete = true
		return
	}
	switch flags {
	case flagBranch:
		if count == 0 {
			s.problem("bucket %q: page %d: empty branch page", b.Name, id)
			b.Incomplete = true
		}
		for i := 0; i < count; i++ {
			e := pageHeader + i*elemSize
			child := binary.LittleEndian.Uint64(p[e+8:])
			s.walk(b, child, depth+1)
		}
	case flagLeaf:
		for i := 0; i < count; i++ {
			e := pageHeader + i*elemSize
			eflags := binary.LittleEndian.Uint32(p[e:])
			pos := uint64(binary.LittleEndian.Uint32(p[e+4:]))
			ks := uint64(binary.LittleEndian.Uint32(p[e+8:]))
			vs := uint64(binary.LittleEndian.Uint32(p[e+12:]))
			start := uint64(e) + pos
			if start+ks+vs > uint64(len(p)) || ks == 0 {
				s.problem("bucket %q: page %d: element %d out of the page", b.Name, id, i)
				b.Unreadable++
				continue
			}
			k, v := p[start:start+ks], p[start+ks:start+ks+vs]
			if eflags&bucketLeaf == 0 {
				if s.collect {
					b.KVs = append(b.KVs, KV{Key: clone(k), Value: clone(v)})
				}
				continue
			}
			sub := &Bucket{Name: clone(k)}
			b.Buckets = append(b.Buckets, sub)
			if len(v) < bucketHeader {
				s.problem("bucket %q: page %d: bucket %q header is %d bytes", b.Name, id, k, len(v))
				sub.Incomplete = true
				continue
			}
			root := binary.LittleEndian.Uint64(v[0:8])
			sub.Sequence = binary.LittleEndian.Uint64(v[8:16])
			if root != 0 {
				s.walk(sub, root, depth+1)
				continue
			}
			inline := v[bucketHeader:]
			if len(inline) < pageHeader {
				s.problem("bucket %q: inline bucket %q is %d bytes", b.Name, k, len(inline))
				sub.Incomplete = true
				continue
			}
			s.node(sub, inline, id, depth+1)
		}
	default:
		s.problem("bucket %q: page %d: flags %#x, not a branch or leaf page", b.Name, id, flags)
		b.Incomplete = true
	}
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

// buffer returns a buffer of n bytes for a page read at depth: a page is
// in use only while its subtree is walked, so each depth reuses one
// buffer (Scan copies what it keeps).
func (s *scanner) buffer(depth, n int) []byte {
	for len(s.bufs) <= depth {
		s.bufs = append(s.bufs, nil)
	}
	if cap(s.bufs[depth]) < n {
		s.bufs[depth] = make([]byte, n)
	}
	return s.bufs[depth][:n]
}
