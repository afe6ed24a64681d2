package console_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBrowserDriverOnlyInTests keeps chromedp (the browser tests' driver)
// and its dependencies out of iotsim and iotagent: they are test-only.
func TestBrowserDriverOnlyInTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/iotsim", "../../cmd/iotagent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list gave %d packages: %s", len(deps), out)
	}
	for _, dep := range deps {
		for _, bad := range []string{"github.com/chromedp/", "github.com/go-json-experiment/"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("a binary links %s, which only the browser tests need", dep)
			}
		}
	}
}
