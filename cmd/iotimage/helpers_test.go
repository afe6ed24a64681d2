package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/internal/mbr"
)

// needTools skips (or fails under CI=true) without dosfstools and mtools.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (apt-get install dosfstools mtools)", tool)
			}
			t.Skipf("%s is missing (apt-get install dosfstools mtools)", tool)
		}
	}
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mbrEntry is a partition for writeMBR: type, first sector, sectors.
type mbrEntry struct {
	typ          byte
	start, count uint32
}

func writeMBR(t *testing.T, img string, entries ...mbrEntry) {
	t.Helper()
	sec := make([]byte, 512)
	for i, e := range entries {
		b := sec[446+16*i:]
		b[4] = e.typ
		binary.LittleEndian.PutUint32(b[8:], e.start)
		binary.LittleEndian.PutUint32(b[12:], e.count)
	}
	sec[510], sec[511] = 0x55, 0xaa
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(sec, 0); err != nil {
		t.Fatal(err)
	}
}

const (
	testBootStart   = 8192          // sectors, as Raspberry Pi OS
	testBootSectors = 36 * 1024 * 2 // 36 MiB: FAT32 needs 65525 clusters
	testBootOffset  = testBootStart * 512
)

// stockCmdline is Raspberry Pi OS's cmdline.txt (one line).
const stockCmdline = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash plymouth.ignore-serial-consoles\n"

// makeImage makes a Raspberry Pi OS-like card image: an MBR with a FAT32
// partition 1 (label bootfs, made by mkfs.vfat) holding cmdline.txt,
// config.txt and pi-gen's user-data template, and a Linux partition 2.
func makeImage(t *testing.T) string { return makeImageGeom(t, testBootSectors, 1) }

// makeImageGeom is makeImage with a boot partition of bootSectors and
// clusters of spc sectors.
func makeImageGeom(t *testing.T, bootSectors, spc int) string {
	t.Helper()
	needTools(t, "mkfs.vfat", "mcopy")
	dir := t.TempDir()
	img := filepath.Join(dir, "raspios.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	size := int64(testBootStart+bootSectors)*512 + 4<<20
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	writeMBR(t, img, mbrEntry{0x0c, testBootStart, uint32(bootSectors)}, mbrEntry{0x83, uint32(testBootStart + bootSectors), uint32(size/512) - testBootStart - uint32(bootSectors)})
	runCmd(t, "mkfs.vfat", "-F", "32", "-s", fmt.Sprint(spc), "-n", "bootfs", "--offset", fmt.Sprint(testBootStart), img, fmt.Sprint(bootSectors/2))
	for name, content := range map[string]string{
		"cmdline.txt": stockCmdline,
		"config.txt":  "[all]\nenable_uart=1\n",
		"user-data":   "#cloud-config\n\n# This is the user-data configuration file for cloud-init.\n#hostname: raspberrypi\nssh_pwauth: false\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		runCmd(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, testBootOffset), p, "::"+name)
		os.Remove(p)
	}
	return img
}

// bootFiles reads every file of the image's boot partition with mtools:
// path -> content.
func bootFiles(t *testing.T, img string) map[string]string {
	t.Helper()
	at := fmt.Sprintf("%s@@%d", img, testBootOffset)
	out := runCmd(t, "mdir", "-/", "-b", "-i", at, "::")
	files := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasSuffix(l, "/") {
			continue
		}
		name := strings.TrimPrefix(l, "::/")
		files[name] = runCmd(t, "mtype", "-i", at, "::"+name)
	}
	return files
}

// bootCopy copies the image's first partition to a file of its own
// (fsck.fat takes no offset).
func bootCopy(t *testing.T, img string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	p, _, err := mbr.Boot(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "bootfs.img")
	out, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := copySparse(out, io.NewSectionReader(f, int64(p.Start), int64(p.Size))); err != nil {
		t.Fatal(err)
	}
	return part
}

// fsckBoot runs fsck.fat -n on a copy of the boot partition.
func fsckBoot(t *testing.T, img string) {
	t.Helper()
	needTools(t, "fsck.fat")
	part := bootCopy(t, img)
	out, err := exec.Command("fsck.fat", "-n", part).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.fat -n: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "differences between boot sector and its backup") || strings.Contains(string(out), "Free cluster summary wrong") || strings.Contains(string(out), "lost") {
		t.Fatalf("fsck.fat -n found problems:\n%s", out)
	}
}

// makeDeb writes a minimal iotagent .deb (ar: debian-binary,
// control.tar.gz with a control file, data.tar.gz) named as given.
func makeDeb(t *testing.T, dir, version, arch string) string {
	t.Helper()
	var ctl bytes.Buffer
	gz := gzip.NewWriter(&ctl)
	tw := tar.NewWriter(gz)
	control := fmt.Sprintf("Package: iotagent\nVersion: %s\nArchitecture: %s\nMaintainer: test\nDescription: test\n", version, arch)
	tw.WriteHeader(&tar.Header{Name: "./control", Mode: 0o644, Size: int64(len(control))})
	tw.Write([]byte(control))
	tw.Close()
	gz.Close()
	var data bytes.Buffer
	gz = gzip.NewWriter(&data)
	tw = tar.NewWriter(gz)
	payload := bytes.Repeat([]byte("iotagent binary "), 4096) // 64 KiB: several clusters
	tw.WriteHeader(&tar.Header{Name: "./usr/bin/iotagent", Mode: 0o755, Size: int64(len(payload))})
	tw.Write(payload)
	tw.Close()
	gz.Close()
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", ctl.Bytes()}, {"data.tar.gz", data.Bytes()}} {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		ar.Write(m.data)
		if len(m.data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	p := filepath.Join(dir, fmt.Sprintf("iotagent_%s_%s.deb", version, arch))
	if err := os.WriteFile(p, ar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is a set of input files for prepare.
type fixture struct {
	dir, deb, config, cert, key, rootCA string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir}
	f.deb = makeDeb(t, dir, "1.4.0", "arm64")
	f.cert, f.key = makeClaim(t, dir, "claim")
	f.rootCA, _ = makeClaim(t, dir, "ca")
	f.config = filepath.Join(dir, "config.json")
	writeFile(t, f.config, `{
  "mqtt": {"endpoint": "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", "root_ca": "/etc/ssl/certs/ca-certificates.crt"},
  "provisioning": {"template": "pi-fleet", "params": {"SerialNumber": "box"}},
  "log": {"format": "json"}
}
`)
	return f
}

func (f fixture) args(extra ...string) []string {
	return append([]string{"prepare", "--deb", f.deb, "--config", f.config, "--claim-cert", f.cert, "--claim-key", f.key}, extra...)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// makeClaim writes a self-signed ECDSA certificate and its key.
func makeClaim(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certPath, keyPath
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
