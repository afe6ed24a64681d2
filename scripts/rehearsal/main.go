// Command rehearsal rehearses the manufacturing line's provisioning against
// an in-process iotsim: it starts iotsim in a temporary directory on free
// loopback ports, then provisions N devices concurrently with the claim
// certificate through agent/provision (the agent's own code), and prints
// throughput, latency percentiles and failures. It exits non-zero on any
// failure.
//
//	go run ./scripts/rehearsal -n 200 -parallel 32          # CreateKeysAndCertificate
//	go run ./scripts/rehearsal -n 200 -parallel 32 -csr     # CreateCertificateFromCsr, file keys
//	go run ./scripts/rehearsal -n 5 -tpm auto               # CSR with a key in swtpm (one at a time)
//
// With -json it prints one JSON object (see report) instead of text.
//
// -tpm auto starts swtpm (Debian package swtpm) itself; -tpm tcp://HOST:PORT
// uses a running one. A TPM serves one device at a time, so -tpm forces
// -parallel 1 and every device replaces the key at the handle.
package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/tpm"
)

type options struct {
	n, parallel int
	csr         bool
	tpm         string
	timeout     time.Duration
	json        bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 200, "devices to provision")
	flag.IntVar(&o.parallel, "parallel", 32, "devices provisioned at once")
	flag.BoolVar(&o.csr, "csr", false, "CreateCertificateFromCsr with a file key per device (default: CreateKeysAndCertificate)")
	flag.StringVar(&o.tpm, "tpm", "", `CSR with the key in a TPM: "auto" starts swtpm, or tcp://HOST:PORT`)
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rehearsal:", err)
		os.Exit(1)
	}
}

// outcome is one device's result.
type outcome struct {
	serial  string
	latency time.Duration
	err     error
}

func run(o options, out io.Writer) error {
	if o.n <= 0 || o.parallel <= 0 {
		return errors.New("-n and -parallel must be positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "rehearsal-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sim, err := cloud.Start(cloud.Options{DataDir: filepath.Join(tmp, "sim"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer sim.Close()
	ep := sim.Endpoint()
	claim, err := tls.LoadX509KeyPair(ep.ClaimCert, ep.ClaimKey)
	if err != nil {
		return fmt.Errorf("claim certificate: %w", err)
	}

	mode := "CreateKeysAndCertificate"
	var tpmStore *tpm.TPMStore
	if o.tpm != "" {
		dev := o.tpm
		if dev == "auto" {
			sw, err := startSwtpm(ctx, filepath.Join(tmp, "swtpm"))
			if err != nil {
				return err
			}
			defer sw.stop()
			dev = sw.device()
		}
		if tpmStore, err = tpm.OpenTPM(tpm.TPMConfig{Device: dev}); err != nil {
			return err
		}
		defer tpmStore.Close()
		o.parallel, o.csr, mode = 1, true, "CreateCertificateFromCsr, key in TPM "+dev
	} else if o.csr {
		mode = "CreateCertificateFromCsr, file keys"
	}
	if !o.json {
		fmt.Fprintf(out, "provisioning %d devices, %d at a time, %s, against iotsim at %s\n", o.n, o.parallel, mode, ep.MQTTEndpoint)
	}

	jobs := make(chan int)
	results := make(chan outcome, o.n)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(o.parallel, o.n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results <- provisionOne(ctx, sim, claim, filepath.Join(tmp, "devices"), i, o, tpmStore)
			}
		}()
	}
feed:
	for i := range o.n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	close(results)

	rep := summarize(results, o, mode, ep.MQTTEndpoint, elapsed)
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.print(out, o.timeout)
	}
	if n := o.n - rep.Provisioned; n > 0 {
		return fmt.Errorf("%d of %d devices not provisioned", n, o.n)
	}
	return nil
}

// report is the rehearsal's result; -json prints it as it is.
type report struct {
	Devices     int     `json:"devices"`
	Parallel    int     `json:"parallel"`
	Mode        string  `json:"mode"`
	Endpoint    string  `json:"endpoint"`
	Provisioned int     `json:"provisioned"`
	ElapsedMS   float64 `json:"elapsed_ms"`
	PerSecond   float64 `json:"devices_per_s"`
	// Latency per provisioned device, in milliseconds; absent when none
	// was provisioned.
	Latency    *latency  `json:"latency_ms,omitempty"`
	Failures   []failure `json:"failures"`    // by reason, sorted
	NotStarted int       `json:"not_started"` // the timeout came first
	OK         bool      `json:"ok"`
}

type latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type failure struct {
	Reason  string   `json:"reason"`
	Count   int      `json:"count"`
	Serials []string `json:"serials"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(results <-chan outcome, o options, mode, endpoint string, elapsed time.Duration) report {
	rep := report{Devices: o.n, Parallel: o.parallel, Mode: mode, Endpoint: endpoint, ElapsedMS: ms(elapsed), Failures: []failure{}}
	var lat []time.Duration
	failures := map[string][]string{}
	nfail := 0
	for r := range results {
		if r.err != nil {
			nfail++
			failures[r.err.Error()] = append(failures[r.err.Error()], r.serial)
			continue
		}
		lat = append(lat, r.latency)
	}
	rep.Provisioned = len(lat)
	rep.NotStarted = o.n - len(lat) - nfail
	rep.PerSecond = float64(len(lat)) / elapsed.Seconds()
	slices.Sort(lat)
	if len(lat) > 0 {
		rep.Latency = &latency{P50: ms(percentile(lat, 50)), P99: ms(percentile(lat, 99)), Max: ms(lat[len(lat)-1])}
	}
	for _, r := range slices.Sorted(maps.Keys(failures)) {
		sort.Strings(failures[r])
		rep.Failures = append(rep.Failures, failure{Reason: r, Count: len(failures[r]), Serials: failures[r]})
	}
	rep.OK = rep.Provisioned == o.n
	return rep
}

func (rep report) print(out io.Writer, timeout time.Duration) {
	round := func(v float64) time.Duration {
		return (time.Duration(v*1000) * time.Microsecond).Round(time.Millisecond)
	}
	fmt.Fprintf(out, "provisioned %d/%d in %v: %.1f devices/s\n", rep.Provisioned, rep.Devices, round(rep.ElapsedMS), rep.PerSecond)
	if l := rep.Latency; l != nil {
		fmt.Fprintf(out, "latency per device: p50 %v, p99 %v, max %v\n", round(l.P50), round(l.P99), round(l.Max))
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(out, "FAILED %d (e.g. %s): %s\n", f.Count, f.Serials[0], f.Reason)
	}
	if rep.NotStarted > 0 {
		fmt.Fprintf(out, "NOT STARTED %d: timeout %v reached\n", rep.NotStarted, timeout)
	}
}

func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

// provisionOne is one device on the line: connect with the claim, run
// fleet provisioning, disconnect.
func provisionOne(ctx context.Context, sim *cloud.Sim, claim tls.Certificate, dir string, i int, o options, ts *tpm.TPMStore) outcome {
	serial := fmt.Sprintf("RH-%05d", i)
	r := outcome{serial: serial}
	t0 := time.Now()
	stateDir := filepath.Join(dir, serial)
	var ks provision.KeyStore
	switch {
	case ts != nil:
		ks = replacingStore{ts}
	case o.csr:
		ks = tpm.NewFileStore(filepath.Join(stateDir, "identity", "device.key"))
	}
	c, err := transport.New(transport.Options{
		Broker: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(),
		Certificate: claim, ClientID: "provision-" + serial, CleanSession: true,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 2 * time.Second,
	})
	if err != nil {
		r.err = err
		return r
	}
	// Subscribe to the answers before connecting, so that they are in
	// place when the requests go out (the transport cannot say when a
	// SUBSCRIBE made while connected is acknowledged); Provision's own
	// Subscribe then only replaces the handler.
	api := "create"
	if o.csr {
		api = "create-from-csr"
	}
	for _, base := range []string{"$aws/certificates/" + api, "$aws/provisioning-templates/" + cloud.ProvisioningTemplate + "/provision"} {
		for _, outcome := range []string{"accepted", "rejected"} {
			if err := c.Subscribe(base+"/json/"+outcome, 1, func(string, []byte) {}); err != nil {
				r.err = err
				return r
			}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(cctx) }()
	defer func() { cancel(); <-done }()
	if err := c.WaitConnected(cctx); err != nil {
		r.err = fmt.Errorf("connect with the claim: %w (%s)", err, c.Stats().LastError)
		return r
	}
	id, err := provision.Provision(cctx, c, ks, provision.Options{
		Template: cloud.ProvisioningTemplate,
		Params:   map[string]string{"SerialNumber": serial},
		UseCSR:   o.csr,
		StateDir: stateDir,
	})
	switch {
	case err != nil:
		r.err = err
	case id.ThingName != serial:
		r.err = fmt.Errorf("thing %q, want %q", id.ThingName, serial)
	}
	r.latency = time.Since(t0)
	return r
}

// replacingStore gives every rehearsed device a new key at the TPM's one
// handle, as a fresh board would have.
type replacingStore struct{ s *tpm.TPMStore }

func (r replacingStore) Signer() (crypto.Signer, error)   { return nil, tpm.ErrNoKey }
func (r replacingStore) Generate() (crypto.Signer, error) { return r.s.Replace() }
