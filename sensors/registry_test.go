package sensors

import (
	"context"
	"slices"
	"testing"
)

func TestRegistry(t *testing.T) {
	open := func(context.Context, Part, Host) (Sampler, error) { return nil, nil }
	Register(Driver{Type: "test-registry", Open: open})
	if _, ok := Lookup("test-registry"); !ok {
		t.Fatal("Lookup does not find a registered driver")
	}
	if _, ok := Lookup("test-unknown"); ok {
		t.Fatal("Lookup finds a driver that was never registered")
	}
	if !slices.Contains(Types(), "test-registry") {
		t.Fatalf("Types() = %v, without test-registry", Types())
	}
	for name, d := range map[string]Driver{
		"duplicate": {Type: "test-registry", Open: open},
		"no type":   {Open: open},
		"no open":   {Type: "test-no-open"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register with %s did not panic", name)
				}
			}()
			Register(d)
		}()
	}
}
