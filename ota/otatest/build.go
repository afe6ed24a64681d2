package otatest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/iotagent/iotagent/internal/version"
)

// Module is the agent's Go module path; StampVar is the variable the
// release build stamps with "iotagent-version:V;" (internal/version).
const (
	Module   = "github.com/iotagent/iotagent"
	StampVar = Module + "/internal/version.stamp"
)

// Builder builds Go programs of this module into a directory, each
// (package, GOARCH, ldflags) once; it is safe for concurrent use.
type Builder struct {
	dir string

	mu    sync.Mutex
	root  string
	built map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// NewBuilder returns a Builder writing into dir (which the caller
// removes).
func NewBuilder(dir string) *Builder {
	return &Builder{dir: dir, built: map[string]*build{}}
}

// Agent builds ./cmd/iotagent for goarch ("" is this machine's) as a
// release is built (static, -trimpath, stripped) with its version
// stamped, and returns the binary's path.
func (b *Builder) Agent(v, goarch string) (string, error) {
	return b.Program("./cmd/iotagent", goarch, "-s -w -X "+StampVar+"="+version.StampKey+":"+v+";")
}

// Program builds the package pkg (a path relative to the module root,
// e.g. "./ota/e2e/testdata/fakeagent") for goarch with ldflags and returns
// the binary's path. Each combination is built once.
func (b *Builder) Program(pkg, goarch, ldflags string) (string, error) {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	key := pkg + "\x00" + goarch + "\x00" + ldflags
	b.mu.Lock()
	e := b.built[key]
	if e == nil {
		e = &build{path: filepath.Join(b.dir, fmt.Sprintf("%s-%s-%d", filepath.Base(pkg), goarch, len(b.built)))}
		b.built[key] = e
	}
	b.mu.Unlock()
	e.once.Do(func() { e.err = b.goBuild(e.path, pkg, goarch, ldflags) })
	return e.path, e.err
}

func (b *Builder) goBuild(out, pkg, goarch, ldflags string) error {
	root, err := b.moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, goarch, err, o)
	}
	return nil
}

// moduleRoot finds the module's directory with `go env GOMOD` from the
// working directory (a test runs in its package's directory).
func (b *Builder) moduleRoot() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.root != "" {
		return b.root, nil
	}
	o, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(o))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside the %s module", Module)
	}
	if data, err := os.ReadFile(mod); err != nil || !bytes.Contains(data, []byte("module "+Module+"\n")) {
		return "", fmt.Errorf("%s is not the %s module (%v)", mod, Module, err)
	}
	b.root = filepath.Dir(mod)
	return b.root, nil
}

// goTool is the go command: $GOROOT/bin/go when `go test` set GOROOT,
// else the one on PATH.
func goTool() string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// BinaryVersion runs `BINARY version` and returns the version it prints
// ("iotagent 1.2.3 (...)" gives "1.2.3").
func BinaryVersion(binary string) (string, error) {
	o, err := exec.Command(binary, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", binary, err)
	}
	f := strings.Fields(string(o))
	if len(f) < 2 || f[0] != "iotagent" {
		return "", fmt.Errorf("%s version: unexpected output %q", binary, o)
	}
	return f[1], nil
}
