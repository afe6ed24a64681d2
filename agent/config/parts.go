package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strings"

	"github.com/iotagent/iotagent/sensors"
)

// Part is one named part of the device (the key of "parts" names it):
// a GPIO input or output, a sensor of a registered driver type sampled on
// its interval, or a part whose readings a local program pushes over the
// local API. docs/device-config.md describes each field.
type Part struct {
	Type string `json:"type"` // "input", "output", "push" or a registered driver type
	// Sim runs the part's simulated counterpart: a pin driven by the FIFO
	// SimFIFO, or the driver's register- or file-level simulation.
	Sim       bool               `json:"sim"`
	SimFIFO   string             `json:"sim_fifo"`   // sim: lines drive the part; default <state_dir>/sim/<name>
	SimValues map[string]float64 `json:"sim_values"` // sim: readings to start from

	// GPIO inputs and outputs.
	Pin        string `json:"pin"`
	Pull       string `json:"pull"`
	ActiveLow  bool   `json:"active_low"`
	DebounceMs int    `json:"debounce_ms"`
	// Role of an input (or of a push part's events): "alarm", "state" or
	// "counter".
	Role       string `json:"role"`
	Armed      bool   `json:"armed"`        // alarm: raises alarms while the device is armed
	Event      string `json:"event"`        // alarm: the alarm's event; default the part's name
	Message    string `json:"message"`      // alarm: the alarm's message; default "<name> active"
	WarnAfterS int    `json:"warn_after_s"` // state: a warning after this long active; 0 = none

	// Sampled parts.
	Bus       string          `json:"bus"`
	Address   int             `json:"address"`
	Device    string          `json:"device"`
	IntervalS int             `json:"interval_s"` // 0: telemetry.interval_s
	Options   json.RawMessage `json:"options"`    // the driver's own settings

	// Limits per reading (sampled and push parts).
	Limits map[string]Limit `json:"limits"`
}

// Limit is a reading's warning thresholds: above High or below Low raises
// a warning, which clears once the reading is back by Hysteresis.
type Limit struct {
	High       *float64 `json:"high"`
	Low        *float64 `json:"low"`
	Hysteresis float64  `json:"hysteresis"`
}

// NamedPart is a Part with its name.
type NamedPart struct {
	Name string
	Part
}

// The part types the agent itself provides; every other type is a driver
// of the sensors registry.
const (
	TypeInput  = "input"
	TypeOutput = "output"
	TypePush   = "push"
)

// Input roles.
const (
	RoleAlarm   = "alarm"
	RoleState   = "state"
	RoleCounter = "counter"
)

// defaultPart is what a part object in the file starts from.
func defaultPart() Part { return Part{Pull: "down", DebounceMs: 50, Armed: true} }

// Sampled reports whether the part is read on an interval through the
// sensors registry.
func (p Part) Sampled() bool {
	return p.Type != TypeInput && p.Type != TypeOutput && p.Type != TypePush
}

// Legacy reports whether the device is described by the old fixed
// "sensors" section (motion, contact, bme280, outputs) instead of "parts".
func (c *Config) Legacy() bool {
	s := c.Sensors
	return s.Motion != nil || s.Contact != nil || s.BME280 != nil || len(s.Outputs) > 0
}

// DeviceParts returns the device's parts sorted by name: "parts", or the
// old "sensors" section translated into parts (the chocolate box's roles:
// motion and the lid contact raise alarms, the BME280 warns above
// temperature.max_c).
func (c *Config) DeviceParts() []NamedPart {
	var out []NamedPart
	if !c.Legacy() {
		for name, p := range c.Parts {
			out = append(out, NamedPart{name, p})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	s := c.Sensors
	for name, in := range map[string]*Input{"motion": s.Motion, "contact": s.Contact} {
		if in == nil {
			continue
		}
		p := ChocolateBoxPart(name, c.Temperature.MaxC)
		p.Sim, p.SimFIFO, p.Pin, p.Pull, p.ActiveLow, p.DebounceMs = in.Driver == "sim", in.SimFIFO, in.Pin, in.Pull, in.ActiveLow, in.DebounceMs
		out = append(out, NamedPart{name, p})
	}
	if b := s.BME280; b != nil {
		p := ChocolateBoxPart("bme280", c.Temperature.MaxC)
		p.Sim, p.SimFIFO, p.Bus, p.Address = b.Driver == "sim", b.SimFIFO, b.Bus, b.Address
		p.SimValues = map[string]float64{"temperature_c": b.SimTemperatureC}
		out = append(out, NamedPart{"bme280", p})
	}
	for _, o := range s.Outputs {
		out = append(out, NamedPart{o.Name, Part{Type: TypeOutput, Sim: o.Driver == "sim", Pin: o.Pin, ActiveLow: o.ActiveLow}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ChocolateBoxPart is the chocolate box's description of its part name
// (motion, contact, bme280) in the terms of parts, as the old "sensors"
// section meant it: the PIR raises "motion" alarms, the lid contact
// "lid_open" alarms ("lid opened"), the BME280 is read with telemetry and
// warns above maxC. Other names get an alarm input.
func ChocolateBoxPart(name string, maxC float64) Part {
	p := defaultPart()
	switch name {
	case "bme280":
		return Part{Type: "bme280", Bus: "1", Address: 0x76, Limits: map[string]Limit{"temperature_c": {High: &maxC}}}
	case "contact":
		p.Type, p.Role, p.Event, p.Message = TypeInput, RoleAlarm, "lid_open", "lid opened"
	case "motion":
		p.Type, p.Role, p.Event, p.Message = TypeInput, RoleAlarm, "motion", "motion detected"
	default:
		p.Type, p.Role = TypeInput, RoleAlarm
	}
	return p
}

// AlarmEvent and AlarmMessage are what an alarm of the part says.
func (p NamedPart) AlarmEvent() string {
	if p.Event != "" {
		return p.Event
	}
	return p.Name
}

// AlarmMessage is the message of the part's alarm.
func (p NamedPart) AlarmMessage() string {
	if p.Message != "" {
		return p.Message
	}
	return p.Name + " active"
}

// Limits of a part's settings.
const (
	maxParts        = 64
	maxWarnAfterS   = 86400
	maxPartInterval = 86400
	maxEventBytes   = 64
	maxMessageBytes = 256
	maxReadingName  = 32
	maxI2CAddress   = 0x7f
)

// ReadingName reports whether s is a valid reading name: 1 to 32 of
// a-z 0-9 _, its unit last (temperature_c).
func ReadingName(s string) bool { return outputName.match(s) }

// validateParts checks "parts", and that it is not mixed with the old
// "sensors" section.
func (c *Config) validateParts(p *problems, pins map[string]string) {
	if len(c.Parts) == 0 {
		return
	}
	if c.Legacy() {
		p.add(ErrInvalid, "sensors", "\"sensors\" and \"parts\" are both set: describe the device in \"parts\" only (see the migration in README.md)")
		return
	}
	if len(c.Parts) > maxParts {
		p.add(ErrInvalid, "parts", "%d parts: at most %d", len(c.Parts), maxParts)
	}
	for _, np := range c.DeviceParts() {
		validatePart(p, pins, np)
	}
}

func validatePart(p *problems, pins map[string]string, np NamedPart) {
	path := "parts." + np.Name
	inv := func(sub, format string, args ...any) {
		fp := path
		if sub != "" {
			fp += "." + sub
		}
		p.add(ErrInvalid, fp, format, args...)
	}
	if !outputName.match(np.Name) {
		inv("", "%q is not a valid part name: want 1 to 32 of a-z 0-9 _", np.Name)
	}
	pt := np.Part
	// unused lists the fields set that the part's type does not use.
	unused := func(fields map[string]bool) {
		names := make([]string, 0, len(fields))
		for k, set := range fields {
			if set {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			inv(k, "not used by a part of type %q", pt.Type)
		}
	}
	gpio := func() {
		if pt.Sim {
			if pt.SimFIFO == "" {
				inv("sim_fifo", "required with \"sim\": true")
			}
			return
		}
		if pinProblem(p, path, pt.Pin) {
			if first, ok := pins[pt.Pin]; ok {
				inv("pin", "%s is already used by %s", pt.Pin, first)
			} else {
				pins[pt.Pin] = path
			}
		}
	}
	role := func() {
		switch pt.Role {
		case RoleAlarm:
			if len(pt.Event) > maxEventBytes || strings.ContainsAny(pt.Event, "\x00\n") {
				inv("event", "at most %d bytes on one line", maxEventBytes)
			}
			if len(pt.Message) > maxMessageBytes || strings.ContainsAny(pt.Message, "\x00\n") {
				inv("message", "at most %d bytes on one line", maxMessageBytes)
			}
		case RoleState, RoleCounter:
			if pt.Event != "" || pt.Message != "" {
				inv("event", "only a part with role \"alarm\" raises alarms")
			}
		default:
			inv("role", "want one of \"alarm\", \"state\", \"counter\"; got %q", pt.Role)
		}
		if pt.Role != RoleState && pt.WarnAfterS != 0 {
			inv("warn_after_s", "only a part with role \"state\" warns when left active")
		}
		inRange(p, path+".warn_after_s", pt.WarnAfterS, 0, maxWarnAfterS)
	}
	sampledFields := map[string]bool{"bus": pt.Bus != "", "address": pt.Address != 0, "device": pt.Device != "",
		"interval_s": pt.IntervalS != 0, "options": len(pt.Options) > 0, "sim_values": len(pt.SimValues) > 0}
	// roleFields are an input's role settings, which only inputs and push
	// parts with a role use.
	roleFields := map[string]bool{"event": pt.Event != "", "message": pt.Message != "", "warn_after_s": pt.WarnAfterS != 0}
	switch pt.Type {
	case TypeInput:
		gpio()
		oneOf(p, path+".pull", pt.Pull, "down", "up", "none")
		inRange(p, path+".debounce_ms", pt.DebounceMs, 0, 10000)
		role()
		sampledFields["limits"] = len(pt.Limits) > 0
		unused(sampledFields)
	case TypeOutput:
		gpio()
		sampledFields["limits"] = len(pt.Limits) > 0
		sampledFields["role"] = pt.Role != ""
		maps.Copy(sampledFields, roleFields)
		unused(sampledFields)
	case TypePush:
		if pt.Role != "" {
			role()
		} else {
			maps.Copy(sampledFields, roleFields)
		}
		sampledFields["pin"], sampledFields["sim"] = pt.Pin != "", pt.Sim
		unused(sampledFields)
		validateLimits(p, path+".limits", pt.Limits)
	case "":
		inv("type", "required: \"input\", \"output\", \"push\" or a sensor type (%s)", strings.Join(sensors.Types(), ", "))
	default:
		d, ok := sensors.Lookup(pt.Type)
		if !ok {
			inv("type", "unknown type %q: want \"input\", \"output\", \"push\" or a sensor type (%s)", pt.Type, strings.Join(sensors.Types(), ", "))
		} else if pt.Sim && d.Sim == nil {
			inv("sim", "type %q has no simulated counterpart", pt.Type)
		}
		roleFields["pin"], roleFields["role"] = pt.Pin != "", pt.Role != ""
		unused(roleFields)
		if pt.Bus != "" && !busName.match(pt.Bus) {
			inv("bus", "want an I²C bus name such as \"1\" (for /dev/i2c-1), got %q", pt.Bus)
		}
		inRange(p, path+".address", pt.Address, 0, maxI2CAddress)
		inRange(p, path+".interval_s", pt.IntervalS, 0, maxPartInterval)
		if len(pt.Options) > 0 && pt.Options[0] != '{' {
			inv("options", "want an object")
		}
		for k, v := range pt.SimValues {
			if !ReadingName(k) || math.IsNaN(v) || math.IsInf(v, 0) {
				inv("sim_values."+k, "want a reading name (a-z 0-9 _) and a finite number")
			}
		}
		if len(pt.SimValues) > 0 && !pt.Sim {
			inv("sim_values", "only with \"sim\": true")
		}
		validateLimits(p, path+".limits", pt.Limits)
	}
}

// validateLimits checks a part's limits; the same checks apply to limits
// set through desired state (LimitProblem).
func validateLimits(p *problems, path string, limits map[string]Limit) {
	for name, l := range limits {
		lp := path + "." + name
		if !ReadingName(name) {
			p.add(ErrInvalid, lp, "%q is not a reading name: want 1 to 32 of a-z 0-9 _", name)
			continue
		}
		if msg := LimitProblem(l); msg != "" {
			p.add(ErrInvalid, lp, "%s", msg)
		}
	}
}

// LimitProblem says what is wrong with a limit, or "".
func LimitProblem(l Limit) string {
	finite := func(f *float64) bool {
		return f == nil || (!math.IsNaN(*f) && !math.IsInf(*f, 0) && math.Abs(*f) <= 1e9)
	}
	switch {
	case l.High == nil && l.Low == nil:
		return "want \"high\", \"low\" or both"
	case !finite(l.High) || !finite(l.Low):
		return "high and low must be numbers within ±1e9"
	case l.High != nil && l.Low != nil && *l.Low >= *l.High:
		return fmt.Sprintf("low %g must be below high %g", *l.Low, *l.High)
	case !(l.Hysteresis >= 0 && l.Hysteresis <= 1e9):
		return fmt.Sprintf("hysteresis %g: want 0 or more", l.Hysteresis)
	case l.High != nil && l.Low != nil && l.Hysteresis >= *l.High-*l.Low:
		return fmt.Sprintf("hysteresis %g must be less than high - low (%g)", l.Hysteresis, *l.High-*l.Low)
	}
	return ""
}
