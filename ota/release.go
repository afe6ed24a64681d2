package ota

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/internal/hostallow"
)

// Release is what a job asks to install: the "ota" job document.
type Release struct {
	Version        string `json:"version"`
	URL            string `json:"url"`
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`    // lowercase hex
	Signature      string `json:"signature"` // the minisign .minisig file, as text
	Arch           string `json:"arch"`      // GOARCH: amd64, arm64, arm (armv6, armv7), 386, riscv64
	AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
}

// ErrBadDocument marks a job document that cannot be used; the job is
// REJECTED with the error text as the reason.
var ErrBadDocument = errors.New("bad ota job document")

// MaxDocument is the largest job document AWS IoT accepts (32 KB).
const MaxDocument = 32 << 10

// MaxArtifact bounds the artifact size a document may announce.
const MaxArtifact = 512 << 20

// document is the wire form of the job document:
//
//	{"operation":"ota","version":"1.4.0","allow_downgrade":false,
//	 "file":{"url":"https://…","size":7340032,"sha256":"…hex…",
//	         "signature":"untrusted comment: …\n…","arch":"arm64"}}
type document struct {
	Operation      string `json:"operation"`
	Version        string `json:"version"`
	AllowDowngrade bool   `json:"allow_downgrade"`
	File           *struct {
		URL       string `json:"url"`
		Size      int64  `json:"size"`
		SHA256    string `json:"sha256"`
		Signature string `json:"signature"`
		Arch      string `json:"arch"`
	} `json:"file"`
}

// ParseDocument parses and checks an "ota" job document. allowedHosts,
// when not empty, lists the only URL hosts (host or host:port) the
// artifact may come from. Every problem is reported in one error wrapping
// ErrBadDocument.
func ParseDocument(raw []byte, allowedHosts []string) (Release, error) {
	if len(raw) > MaxDocument {
		return Release{}, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDocument, len(raw), MaxDocument)
	}
	var d document
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		return Release{}, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	var probs []string
	if d.Operation != "ota" {
		probs = append(probs, fmt.Sprintf("operation is %q, not \"ota\"", d.Operation))
	}
	if _, err := parseVersion(d.Version); err != nil {
		probs = append(probs, "version: "+err.Error())
	}
	r := Release{Version: d.Version, AllowDowngrade: d.AllowDowngrade}
	if d.File == nil {
		probs = append(probs, "file: missing")
	} else {
		f := d.File
		r.URL, r.Size, r.SHA256, r.Signature, r.Arch = f.URL, f.Size, strings.ToLower(f.SHA256), f.Signature, f.Arch
		if err := hostallow.Check(f.URL, allowedHosts); err != nil {
			probs = append(probs, "file.url: "+err.Error())
		}
		if f.Size <= 0 || f.Size > MaxArtifact {
			probs = append(probs, fmt.Sprintf("file.size: %d is not in 1..%d", f.Size, MaxArtifact))
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
			probs = append(probs, "file.sha256: not 64 hex digits")
		}
		if f.Signature == "" {
			probs = append(probs, "file.signature: missing (unsigned artifacts are refused)")
		} else if _, err := parseSignature(f.Signature); err != nil {
			probs = append(probs, "file.signature: "+err.Error())
		}
		if f.Arch == "" {
			probs = append(probs, "file.arch: missing")
		} else if goarch(f.Arch) == "" {
			probs = append(probs, fmt.Sprintf("file.arch: unknown %q", f.Arch))
		}
	}
	if len(probs) > 0 {
		return Release{}, fmt.Errorf("%w: %s", ErrBadDocument, strings.Join(probs, "; "))
	}
	return r, nil
}

// goarch maps a document's arch to a GOARCH ("" if unknown).
func goarch(a string) string {
	switch a {
	case "amd64", "arm64", "386", "riscv64", "arm":
		return a
	case "armv6", "armv7", "armhf", "armel":
		return "arm"
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return ""
}

// DeviceArch is this device's GOARCH.
var DeviceArch = runtime.GOARCH

// version is a parsed dotted version: numeric parts and an optional
// pre-release suffix, which sorts before the release.
type version struct {
	nums []int
	pre  string
}

func parseVersion(s string) (version, error) {
	if s == "" {
		return version{}, errors.New("missing")
	}
	if len(s) > 64 {
		return version{}, errors.New("longer than 64 characters")
	}
	t := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(t, '+'); i >= 0 {
		t = t[:i]
	}
	var v version
	if i := strings.IndexByte(t, '-'); i >= 0 {
		t, v.pre = t[:i], t[i+1:]
	}
	for _, p := range strings.Split(t, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return version{}, fmt.Errorf("%q is not N.N.N", s)
		}
		v.nums = append(v.nums, n)
	}
	return v, nil
}

// compareVersions returns -1, 0 or 1, and ok=false when either version
// cannot be parsed (a "dev" build), in which case no order is known.
func compareVersions(a, b string) (int, bool) {
	va, err1 := parseVersion(a)
	vb, err2 := parseVersion(b)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	for i := 0; i < len(va.nums) || i < len(vb.nums); i++ {
		var x, y int
		if i < len(va.nums) {
			x = va.nums[i]
		}
		if i < len(vb.nums) {
			y = vb.nums[i]
		}
		if x != y {
			if x < y {
				return -1, true
			}
			return 1, true
		}
	}
	switch {
	case va.pre == vb.pre:
		return 0, true
	case va.pre == "":
		return 1, true
	case vb.pre == "":
		return -1, true
	case va.pre < vb.pre:
		return -1, true
	}
	return 1, true
}
