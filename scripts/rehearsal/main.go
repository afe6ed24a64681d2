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
// -tpm auto starts swtpm (Debian package swtpm) itself; -tpm tcp://HOST:PORT
// uses a running one. A TPM serves one device at a time, so -tpm forces
// -parallel 1 and every device replaces the key at the handle.
package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
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
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 200, "devices to provision")
	flag.IntVar(&o.parallel, "parallel", 32, "devices provisioned at once")
	flag.BoolVar(&o.csr, "csr", false, "CreateCertificateFromCsr with a file key per device (default: CreateKeysAndCertificate)")
	flag.StringVar(&o.tpm, "tpm", "", `CSR with the key in a TPM: "auto" starts swtpm, or tcp://HOST:PORT`)
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
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
	fmt.Fprintf(out, "provisioning %d devices, %d at a time, %s, against iotsim at %s\n", o.n, o.parallel, mode, ep.MQTTEndpoint)

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
	missing := o.n - len(lat) - nfail
	slices.Sort(lat)
	fmt.Fprintf(out, "provisioned %d/%d in %v: %.1f devices/s\n", len(lat), o.n, elapsed.Round(time.Millisecond), float64(len(lat))/elapsed.Seconds())
	if len(lat) > 0 {
		fmt.Fprintf(out, "latency per device: p50 %v, p99 %v, max %v\n",
			percentile(lat, 50).Round(time.Millisecond), percentile(lat, 99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	reasons := make([]string, 0, len(failures))
	for r := range failures {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(out, "FAILED %d (e.g. %s): %s\n", len(failures[r]), failures[r][0], r)
	}
	if missing > 0 {
		fmt.Fprintf(out, "NOT STARTED %d: timeout %v reached\n", missing, o.timeout)
	}
	if nfail+missing > 0 {
		return fmt.Errorf("%d of %d devices not provisioned", nfail+missing, o.n)
	}
	return nil
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
