package sim

import "testing"

func TestADS1x15SetNames(t *testing.T) {
	a := NewADS1115(3.3)
	for name, ok := range map[string]bool{
		"ain0_v": true, "ain3_v": true,
		"ain4_v": false, "ain0_vx": false, "ain-1_v": false, "ain00_v": false, "AIN0_V": false, "": false, "soil_pct": false,
	} {
		err := a.Set(name, 1.5)
		if (err == nil) != ok {
			t.Errorf("Set(%q) = %v, want ok %v", name, err, ok)
		}
	}
	if got := a.Input(3); got != 1.5 {
		t.Errorf("Input(3) = %v after Set(ain3_v, 1.5)", got)
	}
}
