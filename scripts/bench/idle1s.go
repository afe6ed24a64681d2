package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/cputemp"
)

// idle1sPart is the part the idle-1s step adds to the agent config: the
// cheapest real read a part has (the CPU temperature: open, read and
// parse one sysfs file, here the driver's file-level simulation), read
// every second.
const idle1sPart = "cpu"

// idle1sConfig adds idle1sPart to the chocolate box's parts.
func idle1sConfig(c map[string]any) {
	issueConfig(c)
	section(c, "parts")[idle1sPart] = map[string]any{"type": cputemp.Type, "sim": true, "interval_s": 1}
}

// idle1s: the idle step again, on a new agent with one more part read
// every second. The reads in the window are counted at the part's file
// (inotify IN_OPEN: every read opens it); the CPU beyond the idle step's,
// divided by them, is the CPU a read costs the agent, beside a Go
// benchmark of the driver's Read alone.
func (b *agentBench) idle1s(ctx context.Context) error {
	tmp := filepath.Join(b.tmp, "idle1s-tmp") // the agent's TMPDIR: where the part's sim files go
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	env := b.env
	env.config = b.config1s
	env.extraEnv = append(slices.Clone(env.extraEnv), "TMPDIR="+tmp)
	if _, err := b.sim.Shadows().Delete(thing, "", nil); err != nil {
		return fmt.Errorf("delete shadow: %w", err)
	}
	w := b.obs.reset()
	p, err := env.start(filepath.Join(b.tmp, "state-idle1s"))
	if err != nil {
		return err
	}
	defer p.stop()
	if _, err := next(ctx, w.reported, 20*time.Second, func(ev event) bool {
		return lookup(ev.reported, "sensors", idle1sPart, "temperature_c") != nil
	}); err != nil {
		return fmt.Errorf("no report of part %s: %w\n%s", idle1sPart, err, p.logTail())
	}
	files, _ := filepath.Glob(filepath.Join(tmp, "*", "sys/class/thermal/thermal_zone0/temp"))
	if len(files) != 1 {
		return fmt.Errorf("want the part's one sim file under %s, found %v", tmp, files)
	}
	var reads atomic.Int64
	var counting atomic.Bool
	stop, err := countOpens(files[0], func() {
		if counting.Load() {
			reads.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	if err := sleepCtx(ctx, b.o.idleSettle-time.Since(p.start)); err != nil {
		return err
	}
	if err := p.alive(); err != nil {
		return err
	}
	counting.Store(true)
	m, err := measureIdle(ctx, p.pid(), b.o.idleWindow)
	counting.Store(false)
	if err != nil {
		return err
	}
	if err := stop(); err != nil {
		return err
	}
	n := reads.Load()
	if n == 0 {
		return fmt.Errorf("part %s was not read in the %v window", idle1sPart, m.window)
	}
	bench := testing.Benchmark(benchmarkCPUTempRead)
	readUS := float64(bench.T) / float64(bench.N) / 1e3

	b.add(Metric{Step: "idle-1s", Name: "agent RSS", Unit: "MiB", Samples: m.rss,
		Note: fmt.Sprintf("the idle step's config plus part %q (%s, sim, interval_s 1); from %v after start, every %v", idle1sPart, cputemp.Type, b.o.idleSettle, m.win)})
	b.add(Metric{Step: "idle-1s", Name: "agent CPU", Unit: "% of a core", Samples: m.cpu,
		Note: fmt.Sprintf("%d windows of %v; %v CPU in %v in all", m.windows, m.win, m.total.Round(time.Millisecond), m.window.Round(time.Second))})
	b.add(Metric{Step: "idle-1s", Name: "part reads in the window", Unit: "", Samples: []float64{float64(n)},
		Note: "counted at the part's file (inotify IN_OPEN)"})
	perRead, note := float64(m.total)/float64(n)/1e3, "all the agent's CPU in the window (no idle step to subtract)"
	if b.idleWin > 0 {
		extra := m.total - time.Duration(float64(b.idleCPU)*float64(m.window)/float64(b.idleWin))
		perRead = float64(extra) / float64(n) / 1e3
		note = fmt.Sprintf("(CPU in the window − the idle step's, %v in %v, scaled) / reads", b.idleCPU.Round(time.Millisecond), b.idleWin.Round(time.Second))
	}
	b.add(Metric{Step: "idle-1s", Name: "agent CPU per part read", Unit: "µs", Samples: []float64{perRead},
		Note: fmt.Sprintf("%s; the driver's Read alone: %.1f µs/op, %d allocs/op (BenchmarkRead of sensors/cputemp, run in the bench)", note, readUS, bench.AllocsPerOp())})
	return nil
}

// countOpens calls opened for every open of file (inotify IN_OPEN), read
// as they come: inotify coalesces an event with the same one still
// unread. stop ends the watch and reports a failure of it.
func countOpens(file string, opened func()) (stop func() error, err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, file, unix.IN_OPEN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify %s: %w", file, err)
	}
	var quit atomic.Bool
	done := make(chan error, 1)
	go func() {
		var buf [64 * unix.SizeofInotifyEvent]byte
		for !quit.Load() {
			if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100); err != nil && !errors.Is(err, unix.EINTR) {
				done <- fmt.Errorf("inotify poll: %w", err)
				return
			}
			k, err := unix.Read(fd, buf[:])
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				done <- fmt.Errorf("inotify read: %w", err)
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= k; {
				// struct inotify_event: wd, mask, cookie, len (uint32 each), name
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				if mask&unix.IN_Q_OVERFLOW != 0 {
					done <- errors.New("inotify queue overflow")
					return
				}
				if mask&unix.IN_OPEN != 0 {
					opened()
				}
				off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
			}
		}
		done <- nil
	}()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() {
			quit.Store(true)
			result = <-done
			unix.Close(fd)
		})
		return result
	}, nil
}

// benchmarkCPUTempRead is sensors/cputemp's BenchmarkRead: one Read of
// the simulated part.
func benchmarkCPUTempRead(b *testing.B) {
	p := sensors.Part{Name: idle1sPart, Type: cputemp.Type, Sim: true}
	h, ctl, err := cputemp.Sim(p)
	if err != nil {
		b.Fatal(err)
	}
	defer ctl.Close()
	s, err := cputemp.Open(context.Background(), p, h)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Read(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
