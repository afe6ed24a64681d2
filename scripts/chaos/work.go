package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// work drives the agent the way its world does: the simulated sensors'
// FIFOs (motion, lid contact, temperature), desired state, jobs.
type work struct {
	e      *env
	fifos  map[string]*os.File // sensor name -> its FIFO, open for writing
	bme    *os.File
	events uint64           // input events the agent has counted
	last   map[string]int64 // the Unix second of each sensor's last alarm
	turn   int
	temp   int
	n      int            // desired-state changes so far
	want   map[string]any // the last desired state
	raised map[alarmKey]bool
}

// sensorNames are the alarm inputs, as the agent names them in its alarm
// messages; the FIFOs are STATE/sim/NAME.
var sensorNames = []string{"motion", "contact"}

func newWork(ctx context.Context, e *env, desired map[string]any) (*work, error) {
	w := &work{e: e, fifos: map[string]*os.File{}, last: map[string]int64{}, want: desired, raised: map[alarmKey]bool{}}
	open := func(name string) (*os.File, error) {
		path := filepath.Join(e.stateDir, "sim", name)
		if err := poll(ctx, 30*time.Second, path, func() (bool, error) {
			fi, err := os.Stat(path)
			return err == nil && fi.Mode()&os.ModeNamedPipe != 0, e.agent.alive()
		}); err != nil {
			return nil, err
		}
		// The agent holds the FIFO open read-write, so this does not block.
		return os.OpenFile(path, os.O_WRONLY, 0)
	}
	for _, s := range sensorNames {
		f, err := open(s)
		if err != nil {
			w.close()
			return nil, err
		}
		w.fifos[s] = f
	}
	var err error
	if w.bme, err = open("bme280"); err != nil {
		w.close()
		return nil, err
	}
	var st localapi.Sensors
	if err := e.local.Get(ctx, localapi.SectionSensors, &st); err != nil {
		w.close()
		return nil, fmt.Errorf("local API sensors: %w", err)
	}
	w.events = st.Alarm.Events
	return w, nil
}

func (w *work) close() {
	for _, f := range w.fifos {
		f.Close()
	}
	if w.bme != nil {
		w.bme.Close()
	}
}

// awaitEvents waits until the agent has counted w.events input events and
// returns its alarm state.
func (w *work) awaitEvents(ctx context.Context) (localapi.AlarmState, error) {
	var st localapi.Sensors
	err := poll(ctx, 15*time.Second, fmt.Sprintf("the agent to count input event %d", w.events), func() (bool, error) {
		if err := w.e.agent.alive(); err != nil {
			return false, err
		}
		if err := w.e.local.Get(ctx, localapi.SectionSensors, &st); err != nil {
			return false, fmt.Errorf("local API sensors: %w", err)
		}
		return st.Alarm.Events >= w.events, nil
	})
	return st.Alarm, err
}

// alarm raises one alarm: the next sensor goes active, then idle again. It
// returns the alarm's key as the agent stamped it. The same sensor alarms
// at most once a second, so that (sensor, second) names one alarm.
func (w *work) alarm(ctx context.Context) (alarmKey, error) {
	sensor := sensorNames[w.turn%len(sensorNames)]
	w.turn++
	for time.Now().Unix() <= w.last[sensor] {
		next := time.Unix(w.last[sensor]+1, 0)
		select {
		case <-ctx.Done():
			return alarmKey{}, ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
	f := w.fifos[sensor]
	if _, err := f.WriteString("1\n"); err != nil {
		return alarmKey{}, fmt.Errorf("%s FIFO: %w", sensor, err)
	}
	w.events++
	st, err := w.awaitEvents(ctx)
	if err != nil {
		return alarmKey{}, err
	}
	if !st.Armed || st.LastSensor != sensor || st.LastAlarm == 0 {
		return alarmKey{}, fmt.Errorf("%s went active but the agent raised no alarm (alarm state %+v)", sensor, st)
	}
	k := alarmKey{sensor, st.LastAlarm}
	if w.raised[k] {
		return alarmKey{}, fmt.Errorf("the agent stamped two %s alarms with second %d", sensor, st.LastAlarm)
	}
	w.raised[k] = true
	w.last[sensor] = st.LastAlarm
	if _, err := f.WriteString("0\n"); err != nil {
		return alarmKey{}, fmt.Errorf("%s FIFO: %w", sensor, err)
	}
	w.events++
	if _, err := w.awaitEvents(ctx); err != nil {
		return alarmKey{}, err
	}
	return k, nil
}

// temperature feeds the next temperature to the simulated BME280: a saw
// tooth from 24 to 34 °C that crosses the desired limits (28 to 31 °C),
// raising and clearing the warning.
func (w *work) temperature() error {
	c := 24 + w.temp%11
	w.temp++
	if _, err := fmt.Fprintf(w.bme, "%d\n", c); err != nil {
		return fmt.Errorf("bme280 FIFO: %w", err)
	}
	return nil
}

// desiredState is the n-th desired state: the alarm armed always, the
// telemetry interval, the temperature limit and the LED changing.
func desiredState(n int) map[string]any {
	return map[string]any{
		"alarm":     map[string]any{"armed": true},
		"telemetry": map[string]any{"interval_s": 1 + n%2},
		"sensors":   map[string]any{"bme280": map[string]any{"limits": map[string]any{"temperature_c": map[string]any{"high": 28 + n%4}}}},
		"outputs":   map[string]any{"led": n%2 == 1},
	}
}

// changeDesired sets the next desired state.
func (w *work) changeDesired(ctx context.Context) error {
	w.n++
	d := desiredState(w.n)
	if err := w.e.setDesired(ctx, d); err != nil {
		return err
	}
	w.want = d
	return nil
}

// jobs queues this class's two jobs: a download-file job that must
// succeed and a job with an operation the agent does not run, which it
// must reject.
func (w *work) jobs(ctx context.Context, prefix string) (map[string]string, error) {
	dl, odd := prefix+"-dl", prefix+"-odd"
	doc := fmt.Sprintf(`{"operation":"download-file","url":"${aws:iot:s3-presigned-url:%s}","path":%q,"sha256":%q}`,
		w.e.objURL, filepath.Join(w.e.dlDir, dl+".txt"), w.e.objSHA)
	if err := w.e.createJob(ctx, dl, doc); err != nil {
		return nil, err
	}
	if err := w.e.createJob(ctx, odd, `{"operation":"format-disk"}`); err != nil {
		return nil, err
	}
	return map[string]string{dl: "SUCCEEDED", odd: "REJECTED"}, nil
}
