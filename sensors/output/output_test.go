package output_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/iotagent/iotagent/sensors/output"
	"github.com/iotagent/iotagent/sensors/sim"
)

func TestSet(t *testing.T) {
	tests := []struct {
		name      string
		activeLow bool
		sets      []bool
		want      []bool // pin levels, starting with New's "off"
	}{
		{name: "active high", sets: []bool{true, false, true}, want: []bool{false, true, false, true}},
		{name: "active low", activeLow: true, sets: []bool{true, false}, want: []bool{true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := sim.NewOutputPin("GPIO27")
			o, err := output.New("buzzer", pin, tt.activeLow)
			if err != nil {
				t.Fatal(err)
			}
			if o.On() {
				t.Error("On() after New = true")
			}
			for _, on := range tt.sets {
				if err := o.Set(on); err != nil {
					t.Fatal(err)
				}
				if o.On() != on {
					t.Errorf("On() = %v after Set(%v)", o.On(), on)
				}
			}
			if diff := cmp.Diff(tt.want, pin.History()); diff != "" {
				t.Errorf("pin levels (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGpiotestPin(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO17", Num: 17, L: gpio.High}
	o, err := output.New("led", pin, false)
	if err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.Low {
		t.Error("New did not drive the pin off")
	}
	if err := o.Set(true); err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.High || o.Name() != "led" {
		t.Errorf("pin = %v, name %q", pin.Read(), o.Name())
	}
}

type failPin struct {
	gpiotest.Pin
	err error
}

func (p *failPin) Out(l gpio.Level) error {
	if p.err != nil {
		return p.err
	}
	return p.Pin.Out(l)
}

func TestErrors(t *testing.T) {
	errOut := errors.New("gpio: permission denied")
	if _, err := output.New("led", &failPin{err: errOut}, false); !errors.Is(err, errOut) {
		t.Errorf("New with a failing pin = %v, want %v", err, errOut)
	}
	if _, err := output.New("led", nil, false); err == nil {
		t.Error("New with a nil pin succeeded")
	}
	if _, err := output.New("", sim.NewOutputPin("X"), false); err == nil {
		t.Error("New with an empty name succeeded")
	}
	pin := &failPin{}
	o, err := output.New("led", pin, false)
	if err != nil {
		t.Fatal(err)
	}
	pin.err = errOut
	if err := o.Set(true); !errors.Is(err, errOut) {
		t.Errorf("Set = %v, want %v", err, errOut)
	}
	if o.On() {
		t.Error("On() = true after a failed Set")
	}
}
