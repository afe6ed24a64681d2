package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud"
)

// Fleet provisioning topics of the CSR path (JSON) for iotsim's default
// template.
const (
	csrTopic      = "$aws/certificates/create-from-csr/json"
	registerTopic = "$aws/provisioning-templates/" + cloud.ProvisioningTemplate + "/provision/json"
)

// errRejected: the service answered a provisioning request on …/rejected.
var errRejected = errors.New("rejected")

// newCSR makes a P-256 key and a CSR for it, PEM, as the agent does.
func newCSR() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "AWS IoT Certificate"}}, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// provisionCSR is one device on the line: a new mutual-TLS connection with
// the claim certificate, CreateCertificateFromCsr, RegisterThing with its
// serial number, DISCONNECT. It returns the thing's name.
func provisionCSR(ctx context.Context, addr string, pool *x509.CertPool, claim tls.Certificate, serial, csr string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	c, err := dialMQTT(ctx, addr, pool, claim, "provision-"+serial, 60)
	if err != nil {
		return "", fmt.Errorf("connect with the claim: %w", err)
	}
	defer c.close()
	if err := c.subscribe(limit, csrTopic+"/accepted", csrTopic+"/rejected", registerTopic+"/accepted", registerTopic+"/rejected"); err != nil {
		return "", fmt.Errorf("subscribe: %w", err)
	}
	call := func(topic string, req, resp any) error {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if err := c.publish(topic, b, true); err != nil {
			return err
		}
		got, payload, err := c.await(deadline, func(t string) bool { return strings.HasPrefix(t, topic+"/") })
		if err != nil {
			return fmt.Errorf("%s: no answer: %w", topic, err)
		}
		if strings.HasSuffix(got, "/rejected") {
			return fmt.Errorf("%s: %w: %s", topic, errRejected, payload)
		}
		if err := json.Unmarshal(payload, resp); err != nil {
			return fmt.Errorf("%s: answer: %w", topic, err)
		}
		return nil
	}
	var created struct {
		CertificateID string `json:"certificateId"`
		Token         string `json:"certificateOwnershipToken"`
	}
	if err := call(csrTopic, map[string]string{"certificateSigningRequest": csr}, &created); err != nil {
		return "", err
	}
	if created.Token == "" {
		return "", errors.New("CreateCertificateFromCsr: no certificateOwnershipToken")
	}
	var registered struct {
		ThingName string `json:"thingName"`
	}
	req := map[string]any{"certificateOwnershipToken": created.Token, "parameters": map[string]string{"SerialNumber": serial}}
	if err := call(registerTopic, req, &registered); err != nil {
		return "", err
	}
	return registered.ThingName, nil
}

// provisioning: fleet provisioning completions per second on the CSR path
// against the real iotsim in its own process (data dir on disk).
func provisioning(ctx context.Context, o *opts, tmp string, add func(Metric)) error {
	n, parallel, batch := o.provN, o.provParallel, o.provBatch
	if n <= 0 || parallel <= 0 || batch <= 0 {
		return errors.New("provisioning: devices, parallelism and batch must be positive")
	}
	// Every device's key and CSR beforehand: only the service is timed.
	t0 := time.Now()
	csrs := make([]string, n)
	for i := range csrs {
		var err error
		if csrs[i], err = newCSR(); err != nil {
			return err
		}
	}
	csrTime := time.Since(t0)

	dir := filepath.Join(tmp, "prov-iotsim")
	sp, err := startSim(ctx, o.bin, dir, filepath.Join(tmp, "iotsim-provisioning.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	claim, err := tls.LoadX509KeyPair(sp.ep.ClaimCert, sp.ep.ClaimKey)
	if err != nil {
		return fmt.Errorf("claim certificate: %w", err)
	}
	caPEM, err := os.ReadFile(sp.ep.RootCA)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	var (
		mu       sync.Mutex
		lat      []float64 // ms, of the current batch
		rates    []float64
		p50, p99 []float64
		done     int
		failed   int
		firstErr error
	)
	batchStart := time.Now()
	start := batchStart
	deadline := start.Add(o.provLimit)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				serial := fmt.Sprintf("BP-%06d", i)
				t := time.Now()
				name, err := provisionCSR(ctx, sp.ep.MQTTEndpoint, pool, claim, serial, csrs[i], 30*time.Second)
				if err == nil && name != serial {
					err = fmt.Errorf("thing %q, want %q", name, serial)
				}
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", serial, err)
					}
					mu.Unlock()
					continue
				}
				done++
				lat = append(lat, ms(d))
				if done%batch == 0 {
					now := time.Now()
					rates = append(rates, float64(batch)/now.Sub(batchStart).Seconds())
					p50 = append(p50, percentile(lat, 50))
					p99 = append(p99, percentile(lat, 99))
					lat, batchStart = lat[:0], now
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	if done == 0 {
		return fmt.Errorf("no device provisioned: %v", firstErr)
	}
	if len(rates) == 0 { // fewer than one batch: the whole run is the sample
		rates = append(rates, float64(done)/elapsed.Seconds())
		p50, p99 = append(p50, percentile(lat, 50)), append(p99, percentile(lat, 99))
	}
	note := fmt.Sprintf("%d of %d devices in %v, %d at once, rate per batch of %d; each a new mutual-TLS connection with the claim certificate, "+
		"SUBSCRIBE, CreateCertificateFromCsr, RegisterThing (iotsim-fleet template), DISCONNECT; keys and CSRs made beforehand (%v); bin/iotsim serve, data dir on disk",
		done, n, elapsed.Round(time.Millisecond), parallel, batch, csrTime.Round(time.Millisecond))
	if failed > 0 {
		note += fmt.Sprintf("; %d failed, first: %v", failed, firstErr)
	}
	add(Metric{Step: "provisioning", Name: "completions per second (CSR path)", Unit: "/s", Samples: rates, Target: "≥ 500/s", Note: note})
	add(Metric{Step: "provisioning", Name: "latency p50 (connect → RegisterThing accepted)", Unit: "ms", Samples: p50, Note: "per batch"})
	add(Metric{Step: "provisioning", Name: "latency p99", Unit: "ms", Samples: p99, Note: "per batch"})
	return nil
}
