package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// ErrNotDeb is a --deb file that is not an iotagent Debian package.
var ErrNotDeb = errors.New("not an iotagent .deb")

// debInfo is what a .deb's control file says about it.
type debInfo struct {
	Package, Version, Architecture string
}

// FileName is the package's canonical file name, without the epoch
// (FAT has no colon): iotagent_1.4.0_arm64.deb.
func (d debInfo) FileName() string {
	v := d.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	return d.Package + "_" + v + "_" + d.Architecture + ".deb"
}

// arMember is one member of an ar archive.
type arMember struct {
	name string
	data []byte
}

// parseAr splits an ar archive (a .deb's outer format) into its members.
func parseAr(data []byte) ([]arMember, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, errors.New("no ar archive header")
	}
	var out []arMember
	for off := len(magic); off < len(data); {
		if len(data)-off < 60 {
			return nil, fmt.Errorf("truncated ar member header at byte %d", off)
		}
		h := data[off : off+60]
		if h[58] != '`' || h[59] != '\n' {
			return nil, fmt.Errorf("bad ar member header at byte %d", off)
		}
		size, err := strconv.ParseUint(strings.TrimSpace(string(h[48:58])), 10, 63)
		if err != nil || size > uint64(len(data)-off-60) {
			return nil, fmt.Errorf("bad ar member size %q at byte %d", strings.TrimSpace(string(h[48:58])), off)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(h[:16])), "/")
		off += 60
		out = append(out, arMember{name: name, data: data[off : off+int(size)]})
		off += int(size) + int(size%2)
	}
	return out, nil
}

// readDeb reads the package name, version and architecture from a .deb.
func readDeb(data []byte) (debInfo, error) {
	members, err := parseAr(data)
	if err != nil {
		return debInfo{}, fmt.Errorf("%w: %w", ErrNotDeb, err)
	}
	if len(members) < 2 || members[0].name != "debian-binary" || !bytes.HasPrefix(members[0].data, []byte("2.")) {
		return debInfo{}, fmt.Errorf("%w: no debian-binary 2.x member first", ErrNotDeb)
	}
	var r io.Reader
	for _, m := range members[1:] {
		switch m.name {
		case "control.tar.gz":
			if r, err = gzip.NewReader(bytes.NewReader(m.data)); err != nil {
				return debInfo{}, fmt.Errorf("%w: control.tar.gz: %w", ErrNotDeb, err)
			}
		case "control.tar.xz":
			if r, err = xz.NewReader(bytes.NewReader(m.data)); err != nil {
				return debInfo{}, fmt.Errorf("%w: control.tar.xz: %w", ErrNotDeb, err)
			}
		case "control.tar":
			r = bytes.NewReader(m.data)
		default:
			if strings.HasPrefix(m.name, "control.tar") {
				return debInfo{}, fmt.Errorf("%w: %s is compressed in a way iotimage does not read (gzip and xz are)", ErrNotDeb, m.name)
			}
			continue
		}
		break
	}
	if r == nil {
		return debInfo{}, fmt.Errorf("%w: no control.tar member", ErrNotDeb)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			return debInfo{}, fmt.Errorf("%w: no control file in control.tar: %v", ErrNotDeb, err)
		}
		if strings.TrimPrefix(h.Name, "./") != "control" {
			continue
		}
		return parseControl(io.LimitReader(tr, 1<<20))
	}
}

func parseControl(r io.Reader) (debInfo, error) {
	var d debInfo
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.HasPrefix(k, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			d.Package = v
		case "Version":
			d.Version = v
		case "Architecture":
			d.Architecture = v
		}
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("%w: control: %w", ErrNotDeb, err)
	}
	if d.Package != "iotagent" {
		return d, fmt.Errorf("%w: its control file names the package %q", ErrNotDeb, d.Package)
	}
	for _, f := range []string{d.Version, d.Architecture} {
		if f == "" || strings.ContainsAny(f, "/\\ _") {
			return d, fmt.Errorf("%w: control file has Version %q, Architecture %q", ErrNotDeb, d.Version, d.Architecture)
		}
	}
	return d, nil
}
