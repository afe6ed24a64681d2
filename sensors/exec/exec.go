// Package exec registers the "exec" part: a command the agent runs on the
// part's interval, which prints its readings as one JSON object on stdout,
// {"soil_pct": 41.5, "battery_v": 3.71}. It is the way in for a sensor
// the registry lacks.
//
// Options:
//
//	{"argv": ["/usr/local/bin/read-soil", "--json"], "timeout": "10s",
//	 "max_output_bytes": 65536, "env": {"SOIL_PORT": "/dev/ttyUSB0"},
//	 "sim_readings": {"soil_pct": 40}, "sim_argv": ["/usr/local/bin/fake-soil"]}
//
// argv is the command and its arguments, run without a shell; a name
// without a slash is looked up in PATH when the part is opened. The
// command gets no stdin and a small environment: PATH, LANG=C.UTF-8,
// IOTAGENT_PART (the part's name) and env; not the agent's own. It must
// finish within timeout (default 10 s, at most 10 min), else it and its
// children are killed (its process group). stdout is limited to
// max_output_bytes (default 64 KiB, at most 1 MiB); stderr's first 1 KiB
// is quoted in the error when it fails. Reading names are 1..64 of a-z,
// 0-9 and _; values are finite JSON numbers. Anything else (a non-zero
// exit, a string, null, NaN, 1e999, a second object, no readings) is an
// error naming the part and what was wrong.
//
// Simulated (Driver.Sim), the part runs sim_argv if it is set, else cat
// on a file of readings that SimControl.Set rewrites, starting with
// sim_readings: the process, the limits and the parser are the real ones.
package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
)

// Type is the registry key.
const Type = "exec"

// Limits of the options.
const (
	DefaultTimeout   = 10 * time.Second
	MaxTimeout       = 10 * time.Minute
	DefaultMaxOutput = 64 << 10
	MaxOutput        = 1 << 20
	MaxReadings      = 64
	stderrKept       = 1 << 10
)

// Path is the PATH the command runs with.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "a command run on the interval that prints JSON readings {\"name\": number} on stdout",
		Open:    Open,
		Sim:     Sim,
	})
}

// Options are the part's options.
type Options struct {
	Argv           []string           `json:"argv"`
	Timeout        string             `json:"timeout"`
	MaxOutputBytes int                `json:"max_output_bytes"`
	Env            map[string]string  `json:"env"`
	SimReadings    map[string]float64 `json:"sim_readings"`
	SimArgv        []string           `json:"sim_argv"`

	timeout time.Duration
}

// ParseOptions decodes and checks p's options.
func ParseOptions(p sensors.Part) (Options, error) {
	var o Options
	if err := drv.Options(p, &o); err != nil {
		return o, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: options: %s: %w", drv.Label(p), fmt.Sprintf(format, a...), sensors.ErrOptions)
	}
	if len(o.Argv) == 0 || o.Argv[0] == "" {
		return o, bad("argv: want the command and its arguments, such as [\"/usr/local/bin/read-soil\", \"--json\"]")
	}
	if o.SimArgv != nil && (len(o.SimArgv) == 0 || o.SimArgv[0] == "") {
		return o, bad("sim_argv: want a command, or leave it out")
	}
	for _, a := range append(slices.Clone(o.Argv), o.SimArgv...) {
		if strings.IndexByte(a, 0) >= 0 {
			return o, bad("argv %q: has a NUL byte", a)
		}
	}
	o.timeout = DefaultTimeout
	if o.Timeout != "" {
		d, err := time.ParseDuration(o.Timeout)
		if err != nil || d <= 0 || d > MaxTimeout {
			return o, bad("timeout %q: want a duration from 1ms to %v, such as \"10s\"", o.Timeout, MaxTimeout)
		}
		o.timeout = d
	}
	if o.MaxOutputBytes == 0 {
		o.MaxOutputBytes = DefaultMaxOutput
	}
	if o.MaxOutputBytes < 2 || o.MaxOutputBytes > MaxOutput {
		return o, bad("max_output_bytes %d: want 2..%d", o.MaxOutputBytes, MaxOutput)
	}
	for k, v := range o.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return o, bad("env %q: want a name without = or NUL, and a value without NUL", k)
		}
	}
	if len(o.SimReadings) > MaxReadings {
		return o, bad("sim_readings: %d readings, at most %d", len(o.SimReadings), MaxReadings)
	}
	for k, v := range o.SimReadings {
		if !drv.ValidName(k) {
			return o, bad("sim_readings %q: a reading name is 1..64 of a-z, 0-9 and _", k)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return o, bad("sim_readings %q: %v is not a finite number", k, v)
		}
	}
	return o, nil
}

type part struct {
	label string
	path  string
	args  []string
	env   []string
	o     Options
}

// Open checks the options and finds the command (in PATH for a bare
// name).
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o, err := ParseOptions(p)
	if err != nil {
		return nil, err
	}
	argv := o.Argv
	if p.Sim {
		switch {
		case o.SimArgv != nil:
			argv = o.SimArgv
		case h.Root == "":
			return nil, fmt.Errorf("%s: a simulated exec part needs the host its Sim returns: %w", drv.Label(p), sensors.ErrOptions)
		default:
			argv = []string{"cat", filepath.Join(h.Root, simFile)}
		}
	}
	label := fmt.Sprintf("part %q (exec %s)", p.Name, argv[0])
	if p.Sim && o.SimArgv == nil {
		label = fmt.Sprintf("part %q (exec, simulated by cat)", p.Name)
	}
	if p.Bus != "" || p.Address != 0 || p.Device != "" {
		return nil, fmt.Errorf("%s: a command has no bus, address or device: %w", label, sensors.ErrOptions)
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w; install it, or give its full path in argv", label, sensors.ErrNoDevice, err)
	}
	env := []string{"PATH=" + Path, "LANG=C.UTF-8", "IOTAGENT_PART=" + p.Name}
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+o.Env[k])
	}
	return &part{label: label, path: path, args: argv[1:], env: env, o: o}, nil
}

// lookPath finds name as the command will run it: a bare name in Path.
func lookPath(name string) (string, error) {
	if !strings.Contains(name, "/") {
		for _, dir := range filepath.SplitList(Path) {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("command %q not found in %s", name, Path)
	}
	st, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("command %q: %w", name, err)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("command %q is not an executable file", name)
	}
	return name, nil
}

// limitBuffer keeps up to max bytes and fails the write past them, which
// stops exec's copy and closes the pipe.
type limitBuffer struct {
	max      int
	buf      bytes.Buffer
	overflow bool
	quiet    bool // keep the first max bytes without failing (stderr)
}

var errTooLarge = errors.New("output limit reached")

func (l *limitBuffer) Write(p []byte) (int, error) {
	room := l.max - l.buf.Len()
	if len(p) <= room {
		return l.buf.Write(p)
	}
	l.buf.Write(p[:max(room, 0)])
	l.overflow = true
	if l.quiet {
		return len(p), nil
	}
	return 0, errTooLarge
}

// Read runs the command once and parses its stdout.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.o.timeout)
	defer cancel()
	cmd := osexec.CommandContext(ctx, s.path, s.args...)
	cmd.Env = s.env
	cmd.Dir = "/"
	stdout := &limitBuffer{max: s.o.MaxOutputBytes}
	stderr := &limitBuffer{max: stderrKept, quiet: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	ownGroup(cmd)
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case parent.Err() != nil:
		return nil, fmt.Errorf("%s: killed: %w", s.label, parent.Err())
	case stdout.overflow:
		return nil, fmt.Errorf("%s: stdout exceeds max_output_bytes (%d): %w", s.label, s.o.MaxOutputBytes, sensors.ErrCorrupt)
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("%s: did not finish within %v and was killed%s: %w", s.label, s.o.timeout, quoteStderr(stderr), context.DeadlineExceeded)
	case err != nil:
		var exit *osexec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("%s: %s%s: %w", s.label, exit.ProcessState, quoteStderr(stderr), err)
		}
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	v, err := ParseOutput(stdout.buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: stdout: %w", s.label, err)
	}
	return v, nil
}

func quoteStderr(l *limitBuffer) string {
	s := strings.TrimSpace(l.buf.String())
	if s == "" {
		return ""
	}
	if l.overflow {
		s += "…"
	}
	return "; stderr: " + strconv.Quote(s)
}

// Close does nothing: nothing runs between reads.
func (s *part) Close() error { return nil }

// ParseOutput parses a command's stdout: one JSON object of 1..64
// readings, each a finite number under a valid name, with nothing but
// white space around it.
func ParseOutput(b []byte) (sensors.Values, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	bad := func(format string, a ...any) (sensors.Values, error) {
		return nil, fmt.Errorf(format+`: %w; want one JSON object of readings, {"name": number, ...}`, append(a, sensors.ErrCorrupt)...)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return bad("empty")
	}
	if err != nil {
		return bad("not JSON (%v)", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return bad("begins with %s", describe(tok))
	}
	v := sensors.Values{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("not JSON (%v)", err)
		}
		name := tok.(string) // object keys are strings
		if !drv.ValidName(name) {
			return bad("reading name %q: want 1..64 of a-z, 0-9 and _", truncate(name))
		}
		if _, dup := v[name]; dup {
			return bad("reading %q appears twice", name)
		}
		if len(v) == MaxReadings {
			return bad("more than %d readings", MaxReadings)
		}
		tok, err = dec.Token()
		if err != nil {
			return bad("reading %q: not JSON (%v)", name, err)
		}
		n, ok := tok.(json.Number)
		if !ok {
			return bad("reading %q is %s, not a number", name, describe(tok))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return bad("reading %q: %s is out of range for a float64", name, truncate(string(n)))
		}
		v[name] = f
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return bad("not JSON (%v)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("more after the object")
	}
	if len(v) == 0 {
		return bad("no readings ({})")
	}
	return v, nil
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", tok)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// simFile is the simulated part's readings, in the Sim host's Root.
const simFile = "readings.json"

// control rewrites the readings file the simulated part cats.
type control struct {
	dir     string
	allowed map[string]float64 // sim_readings; nil allows any name

	mu sync.Mutex
	v  map[string]float64
}

// Sim returns a directory with a readings file (sim_readings) for the
// simulated part to read with cat, and a control whose Set rewrites it.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	o, err := ParseOptions(p)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	dir, err := os.MkdirTemp("", "iotagent-sim-exec-*")
	if err != nil {
		return sensors.Host{}, nil, fmt.Errorf("%s: sim: %w", drv.Label(p), err)
	}
	c := &control{dir: dir, allowed: o.SimReadings, v: map[string]float64{}}
	for k, x := range o.SimReadings {
		c.v[k] = x
	}
	c.mu.Lock()
	err = c.writeLocked()
	c.mu.Unlock()
	if err != nil {
		_ = os.RemoveAll(dir)
		return sensors.Host{}, nil, err
	}
	return sensors.Host{Root: dir}, c, nil
}

// Set implements sensors.SimControl: a reading of sim_readings (any valid
// name if there are none), a finite number.
func (c *control) Set(name string, v float64) error {
	if !drv.ValidName(name) {
		return fmt.Errorf("sim exec: reading name %q: want 1..64 of a-z, 0-9 and _", name)
	}
	if _, ok := c.allowed[name]; c.allowed != nil && !ok {
		return fmt.Errorf("sim exec: no reading %q (sim_readings has %s)", name, strings.Join(slices.Sorted(maps.Keys(c.allowed)), ", "))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("sim exec: %s = %v: JSON has no such number", name, v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v[name] = v
	return c.writeLocked()
}

func (c *control) writeLocked() error {
	b, err := json.Marshal(c.v)
	if err != nil {
		return fmt.Errorf("sim exec: %w", err)
	}
	tmp := filepath.Join(c.dir, simFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("sim exec: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, simFile)); err != nil {
		return fmt.Errorf("sim exec: %w", err)
	}
	return nil
}

// Close removes the readings file.
func (c *control) Close() error { return os.RemoveAll(c.dir) }
