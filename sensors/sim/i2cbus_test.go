package sim_test

import (
	"errors"
	"testing"

	"github.com/iotagent/iotagent/sensors/sim"
)

func TestI2CBus(t *testing.T) {
	b := sim.NewI2CBus("t")
	c, err := sim.NewMCP9808(25)
	if err != nil {
		t.Fatal(err)
	}
	b.Attach(0x18, c)
	r := make([]byte, 2)
	if err := b.Tx(0x19, []byte{5}, r); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("Tx to an empty address = %v, want ErrNACK", err)
	}
	if err := b.Tx(0x18, []byte{5}, r); err != nil || r[0]&0x1f != 0x01 || r[1] != 0x90 {
		t.Errorf("Tx to the MCP9808 = % x, %v; want 25 °C (0x0190 with flags)", r, err)
	}
	boom := errors.New("bus stuck")
	b.SetErr(boom)
	if err := b.Tx(0x18, []byte{5}, r); !errors.Is(err, boom) {
		t.Errorf("Tx with SetErr = %v", err)
	}
	b.SetErr(nil)
	b.Detach(0x18)
	if err := b.Tx(0x18, []byte{5}, r); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("Tx after Detach = %v, want ErrNACK", err)
	}
	if n := b.Transactions(); n != 1 {
		t.Errorf("Transactions = %d, want 1 (the one that reached the chip)", n)
	}
}
