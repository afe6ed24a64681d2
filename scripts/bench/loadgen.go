package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/registry"
)

// device is one simulated device of the load generator.
type device struct {
	name      string
	cert, key []byte
	c         *mclient // nil until connected
}

// raiseNoFile sets the soft RLIMIT_NOFILE to the hard one and returns it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// scale: iotsim (the real binary, its own process) holding as many mutual-
// TLS MQTT connections as the load generator (this process) can open, its
// memory per connection, and shadow updates per second over MQTT.
func scale(ctx context.Context, o *opts, tmp string, add func(Metric)) error {
	limit, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	n := o.devices
	if room := int(limit) - 512; n > room {
		n = max(room, 0)
	}
	dir := filepath.Join(tmp, "scale-iotsim")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%05d", i)
	}
	ready, caPEM, issueTime, err := issueThings(ctx, dir, names, 4, o.issueLimit, nil, nil)
	if err != nil {
		return err
	}
	add(Metric{Step: "iotsim", Name: "things + certificates issued per second", Unit: "/s",
		Samples: []float64{float64(len(ready)) / issueTime.Seconds()},
		Note:    fmt.Sprintf("%d issued in %v (CreateThing, key, certificate, register, attach; bbolt on disk; 4 workers)", len(ready), issueTime.Round(time.Millisecond))})

	sp, err := startSim(ctx, o.bin, dir, filepath.Join(tmp, "iotsim-scale.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	ep, pid := sp.ep, sp.pid()
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	base, err := readMem(pid)
	if err != nil {
		return err
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	connected, rates, firstErr := connectAll(ctx, ready, ep.MQTTEndpoint, pool, o.connectLimit)
	defer func() {
		for _, d := range ready {
			if d.c != nil {
				d.c.conn.Close()
			}
		}
	}()
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	held, err := readMem(pid)
	if err != nil {
		return fmt.Errorf("iotsim memory: %w (did it die? see iotsim-scale.log)", err)
	}
	threads, _ := readStatusField(pid, "Threads")
	note := fmt.Sprintf("of %d attempted in %v at most, 32 dialling at once", len(ready), o.connectLimit)
	if firstErr != nil {
		note += "; first failure: " + firstErr.Error()
	}
	add(Metric{Step: "iotsim", Name: "connected devices held", Unit: "", Samples: []float64{float64(connected)}, Target: "≥ 10,000", Note: note})
	add(Metric{Step: "iotsim", Name: "connect rate (mutual TLS + CONNECT/CONNACK)", Unit: "/s", Samples: rates, Note: "per batch of 1,000"})
	add(Metric{Step: "iotsim", Name: "iotsim RSS before connections", Unit: "MiB", Samples: []float64{float64(base.RSS) / 1024},
		Note: fmt.Sprintf("PSS %.1f MiB", float64(base.PSS)/1024)})
	add(Metric{Step: "iotsim", Name: "iotsim RSS holding all", Unit: "MiB", Samples: []float64{float64(held.RSS) / 1024},
		Note: fmt.Sprintf("PSS %.1f MiB; %d threads", float64(held.PSS)/1024, threads)})
	if connected > 0 {
		add(Metric{Step: "iotsim", Name: "iotsim RSS per connection", Unit: "KiB", Samples: []float64{float64(held.RSS-base.RSS) / float64(connected)},
			Note: "(RSS holding − RSS idle) / connections"})
	}

	// Shadow updates per second over MQTT: QoS 1 PUBLISH, wait for PUBACK
	// (iotsim answers after the shadow service has stored the update).
	var live []*device
	for _, d := range ready {
		if d.c != nil && len(live) < o.shadowConns {
			live = append(live, d)
		}
	}
	if len(live) == 0 {
		return errors.New("no connected device for the shadow update step")
	}
	srates, serr := shadowUpdates(ctx, live, o.shadowWindow)
	if serr != nil && len(srates) == 0 {
		return serr
	}
	snote := fmt.Sprintf("%d devices, each one QoS 1 update in flight, %v; bbolt on disk", len(live), o.shadowWindow)
	if serr != nil {
		snote += "; " + serr.Error()
	}
	add(Metric{Step: "iotsim", Name: "shadow updates per second (MQTT)", Unit: "/s", Samples: srates, Note: snote})
	return nil
}

// connectAll connects devices, 32 at a time, until all are connected or
// limit passes. It returns how many connected, the rate of each batch of
// 1,000 and the first failure.
func connectAll(ctx context.Context, devs []*device, addr string, pool *x509.CertPool, limit time.Duration) (int, []float64, error) {
	var (
		ok       atomic.Int64
		firstErr error
		errOnce  sync.Once
		mu       sync.Mutex
		rates    []float64
	)
	batchStart := time.Now()
	deadline := time.Now().Add(limit)
	work := make(chan *device)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := d.connect(addr, pool); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("%s: %w", d.name, err) })
					continue
				}
				if n := ok.Add(1); n%1000 == 0 {
					mu.Lock()
					now := time.Now()
					rates = append(rates, 1000/now.Sub(batchStart).Seconds())
					batchStart = now
					mu.Unlock()
				}
			}
		}()
	}
	for _, d := range devs {
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		work <- d
	}
	close(work)
	wg.Wait()
	return int(ok.Load()), rates, firstErr
}

func (d *device) connect(addr string, pool *x509.CertPool) error {
	kp, err := tls.X509KeyPair(d.cert, d.key)
	if err != nil {
		return err
	}
	c, err := dialMQTT(context.Background(), addr, pool, kp, d.name, 1200)
	if err != nil {
		return err
	}
	d.c = c
	return nil
}

// shadowUpdates has each device publish shadow updates for window and
// returns the rate in each fifth of it.
func shadowUpdates(ctx context.Context, devs []*device, window time.Duration) ([]float64, error) {
	var count atomic.Int64
	var firstErr error
	var errOnce sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "$aws/things/" + d.name + "/shadow/update"
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := uint16(i%65535 + 1)
				_ = d.c.conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := d.c.conn.Write(publishPacket(topic, id, []byte(`{"state":{"reported":{"seq":`+strconv.Itoa(i)+`}}}`))); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				for {
					typ, _, body, err := readPacket(d.c.r)
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					if typ != pktPuback {
						continue
					}
					got, err := pubackID(typ, body)
					if err != nil || got != id {
						errOnce.Do(func() { firstErr = fmt.Errorf("PUBACK %d, want %d: %v", got, id, err) })
						return
					}
					break
				}
				count.Add(1)
			}
		}()
	}
	var rates []float64
	slices := 5
	prev, prevAt := count.Load(), time.Now()
	for range slices {
		if sleepCtx(ctx, window/time.Duration(slices)) != nil {
			break
		}
		n, at := count.Load(), time.Now()
		rates = append(rates, float64(n-prev)/at.Sub(prevAt).Seconds())
		prev, prevAt = n, at
	}
	close(stop)
	wg.Wait()
	return rates, firstErr
}

// issueThings creates names in the registry of an iotsim data dir opened
// in this process, each with a certificate and key from its CA (what
// `iotsim thing create` does), workers at a time, for at most limit.
// before runs once first (e.g. to create a thing group); after runs for
// each thing once it exists. It returns the devices issued, in order, the
// CA certificate and how long issuing took.
func issueThings(ctx context.Context, dir string, names []string, workers int, limit time.Duration,
	before func(*cloud.Sim) error, after func(reg *registry.Registry, name string) error) ([]*device, []byte, time.Duration, error) {
	sim, err := cloud.Start(cloud.Options{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, nil, 0, err
	}
	if before != nil {
		if err := before(sim); err != nil {
			sim.Close()
			return nil, nil, 0, err
		}
	}
	caPEM := sim.CA().CertPEM
	devs := make([]*device, len(names))
	var issueErr error
	var once sync.Once
	t0 := time.Now()
	deadline := t0.Add(limit)
	var wg sync.WaitGroup
	work := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cert, key, err := cloud.CreateThing(sim.Registry(), sim.CA(), names[i])
				if err == nil && after != nil {
					err = after(sim.Registry(), names[i])
				}
				if err != nil {
					once.Do(func() { issueErr = err })
					continue
				}
				devs[i] = &device{name: names[i], cert: cert, key: key}
			}
		}()
	}
	for i := 0; i < len(names) && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(t0)
	if err := sim.Close(); err != nil {
		return nil, nil, 0, err
	}
	if issueErr != nil {
		return nil, nil, 0, fmt.Errorf("issue certificates: %w", issueErr)
	}
	var ready []*device
	for _, d := range devs {
		if d != nil {
			ready = append(ready, d)
		}
	}
	return ready, caPEM, took, nil
}

// simProc is the real bin/iotsim serving a data dir in its own process.
type simProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
	ep   cloud.Endpoint
}

// startSim runs `iotsim serve` on dir (free loopback ports) and returns
// once it has written its endpoint.json.
func startSim(ctx context.Context, bin, dir, logPath string) (*simProc, error) {
	_ = os.Remove(filepath.Join(dir, "endpoint.json"))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "iotsim"), "serve", "--data-dir", dir,
		"--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start iotsim: %w", err)
	}
	sp := &simProc{cmd: cmd, done: make(chan struct{}), logf: logf}
	go func() { _ = cmd.Wait(); close(sp.done) }()
	for wait := time.Now().Add(30 * time.Second); ; {
		if sp.ep, err = cloud.ReadEndpoint(dir); err == nil {
			return sp, nil
		}
		select {
		case <-sp.done:
			sp.stop()
			return nil, fmt.Errorf("iotsim serve exited at start; see %s", filepath.Base(logPath))
		default:
		}
		if time.Now().After(wait) {
			sp.stop()
			return nil, errors.New("iotsim serve wrote no endpoint.json within 30s")
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			sp.stop()
			return nil, err
		}
	}
}

func (s *simProc) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM, waits up to 20 s, then kills.
func (s *simProc) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.logf.Close()
}
