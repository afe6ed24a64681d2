package qualify_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/qualify"
)

// device is a paho client standing in for a device under test, with its
// own reconnect loop: a fixed interval between attempts, and subscribing
// its filters on every connection or only on the first.
type device struct {
	opts        *paho.ClientOptions
	filters     []string
	interval    time.Duration
	resubscribe bool
}

func newDevice(t *testing.T, sim *cloud.Sim, thing string) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CA().CertPEM)
	o := paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetCleanSession(false).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	return &device{opts: o, filters: []string{"$aws/things/" + thing + "/shadow/update/delta", "$aws/things/" + thing + "/jobs/notify-next"}, interval: time.Second}
}

// run connects, and reconnects interval after each failure or loss, until
// the test ends.
func (d *device) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		first := true
		for ctx.Err() == nil {
			lost := make(chan struct{})
			o := *d.opts
			o.SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
			c := paho.NewClient(&o)
			if tok := c.Connect(); tok.Wait() && tok.Error() == nil {
				if first || d.resubscribe {
					for _, f := range d.filters {
						c.Subscribe(f, 1, nil).Wait()
					}
					first = false
				}
				select {
				case <-lost:
				case <-ctx.Done():
					c.Disconnect(0)
					return
				}
			}
			select {
			case <-time.After(d.interval):
			case <-ctx.Done():
				return
			}
		}
	}()
}

func runCase(t *testing.T, sim *cloud.Sim, thing, name string, timeout time.Duration) qualify.Result {
	t.Helper()
	rep, err := qualify.Run(context.Background(), qualify.Options{Client: sim.Client(), Thing: thing, Cases: []string{name}, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Case != name {
		t.Fatalf("results %+v, want one of case %s", rep.Results, name)
	}
	var b strings.Builder
	_ = rep.Table(&b)
	t.Logf("report:\n%s", b.String())
	if rep.OK() != rep.Results[0].Pass {
		t.Errorf("report OK %v, case pass %v", rep.OK(), rep.Results[0].Pass)
	}
	return rep.Results[0]
}

// A device that never subscribes again after its session is gone fails
// the resubscribe case; the same device subscribing on every connection
// passes it.
func TestResubscribeCase(t *testing.T) {
	sim := cloudtest.Start(t, "")
	lazy := newDevice(t, sim, "lazy")
	lazy.run(t)
	r := runCase(t, sim, "lazy", qualify.CaseResubscribe, 5*time.Second)
	if r.Pass || !strings.Contains(r.Detail, "timed out waiting for the device to subscribe again") || !strings.Contains(r.Detail, "missing 2 of 2 filters") {
		t.Errorf("lazy device: pass %v, %q; want a failure naming the missing filters", r.Pass, r.Detail)
	}

	good := newDevice(t, sim, "good")
	good.resubscribe = true
	good.run(t)
	if r := runCase(t, sim, "good", qualify.CaseResubscribe, 20*time.Second); !r.Pass {
		t.Errorf("good device failed: %s", r.Detail)
	}
}

// A device that reconnects at a fixed interval fails the backoff case.
func TestBackoffCaseFixedInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("two rounds of six reconnects, about 15 s")
	}
	sim := cloudtest.Start(t, "")
	d := newDevice(t, sim, "steady")
	d.resubscribe = true
	d.interval = 500 * time.Millisecond
	d.run(t)
	r := runCase(t, sim, "steady", qualify.CaseReconnectBackoff, time.Minute)
	if r.Pass || !strings.HasPrefix(r.Detail, "no backoff:") {
		t.Errorf("fixed-interval device: pass %v, %q; want no backoff", r.Pass, r.Detail)
	}
	if len(r.Intervals) != qualify.BackoffMaxRounds || len(r.Intervals[0]) != qualify.BackoffRefusals {
		t.Fatalf("intervals %v, want %d rounds of %d", r.Intervals, qualify.BackoffMaxRounds, qualify.BackoffRefusals)
	}
	for _, round := range r.Intervals {
		for _, s := range round {
			if s < 0.4 || s > 1.5 {
				t.Errorf("interval %.3fs, want about 0.5 s (plus the connect): %v", s, r.Intervals)
			}
		}
	}
}

func ms(v ...float64) []time.Duration {
	var out []time.Duration
	for _, x := range v {
		out = append(out, time.Duration(x*float64(time.Second)))
	}
	return out
}

func TestJudgeBackoff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds [][]time.Duration
		want   string // "" passes; else the error's prefix
	}{
		{"fixed", [][]time.Duration{ms(1, 1, 1, 1, 1), ms(1, 1.01, 1, 1, 1)}, "no backoff"},
		{"exponential without jitter", [][]time.Duration{ms(1, 2, 4, 8, 16), ms(1, 2, 4, 8, 16.02)}, "no jitter"},
		{"exponential with jitter", [][]time.Duration{ms(1, 1.5, 3.2, 7.1, 9), ms(1, 1.1, 2.5, 1, 15)}, ""},
		{"linear", [][]time.Duration{ms(1, 2, 3, 4, 5), ms(1.2, 2, 3, 4, 5)}, ""},
		{"shrinking", [][]time.Duration{ms(5, 4, 3, 2, 1), ms(4, 5, 1, 2, 3)}, "no backoff"},
		{"too few intervals", [][]time.Duration{ms(1, 2, 4), ms(1, 2, 4)}, "round 1: 3 intervals"},
		{"one round", [][]time.Duration{ms(1, 2, 4, 8, 16)}, "1 rounds measured"},
		{"unlucky round, then two good", [][]time.Duration{ms(1, 1, 1, 1, 1.1), ms(1, 1.5, 3.2, 7.1, 9), ms(1, 1.1, 2.5, 1, 15)}, ""},
		{"four fixed rounds", [][]time.Duration{ms(1, 1, 1, 1, 1), ms(1, 1, 1, 1, 1), ms(1, 1, 1, 1, 1), ms(1, 1, 1, 1, 1)}, "no backoff"},
	} {
		_, err := qualify.JudgeBackoff(tc.rounds)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want a pass", tc.name, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The criteria against the agent's backoff (full jitter from 0.5 s
// doubling, at least 1 s between CONNECTs as AWS requires) fail a correct
// device rarely: at most 1 in 20,000 runs of the case (up to
// BackoffMaxRounds rounds), over 100,000 seeded runs (a simulation of
// the case gave 2 in a million).
func TestJudgeBackoffFalseFailures(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const runs = 100000
	fails := 0
	for range runs {
		var rounds [][]time.Duration
		for range qualify.BackoffMaxRounds {
			var iv []time.Duration
			for k := range qualify.BackoffRefusals {
				ceil := time.Second << k // attempt k+1 after a refusal
				d := time.Duration(r.Int64N(int64(ceil) + 1))
				iv = append(iv, max(d+2*time.Millisecond, time.Second))
			}
			rounds = append(rounds, iv)
		}
		if _, err := qualify.JudgeBackoff(rounds); err != nil {
			fails++
		}
	}
	if fails > runs/20000 {
		t.Errorf("%d of %d correct runs failed the backoff criteria", fails, runs)
	}
	t.Logf("%d of %d correct runs failed", fails, runs)
}

func FuzzToggle(f *testing.F) {
	f.Add([]byte(`{"state":{"desired":{"outputs":{"led":true}},"reported":{"outputs":{"led":true}}}}`), "")
	f.Add([]byte(`{"state":{"reported":{"a":{"b":false}}}}`), "a.b")
	f.Add([]byte(`{"state":{"desired":{"x":1,"y":{"z":[true]}}}}`), "")
	f.Add([]byte(`null`), "a..b")
	f.Fuzz(func(t *testing.T, doc []byte, key string) {
		k, upd, v, err := qualify.Toggle(doc, key)
		if err != nil {
			return
		}
		if key != "" && k != key {
			t.Fatalf("key %q became %q", key, k)
		}
		// The update sets exactly v at k, and toggling from a shadow that
		// reports v gives !v.
		rep := strings.Replace(string(upd), `"desired"`, `"reported"`, 1)
		k2, _, v2, err := qualify.Toggle([]byte(rep), k)
		if err != nil || k2 != k || v2 == v {
			t.Fatalf("toggle of %s at %q: %q %v %v, want %v", rep, k, k2, v2, err, !v)
		}
	})
}
