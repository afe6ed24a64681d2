//go:build cgo

package tpm

// Tests against go-tpm-tools' in-process simulator (the Microsoft reference
// TPM, built with cgo). CGO_ENABLED=0 builds leave this file out.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// simTPM is a transport to the simulator whose Close leaves the simulator
// running, so a test can reset it (a reboot) and open a new store.
type simTPM struct{ sim *simulator.Simulator }

func (s simTPM) Send(cmd []byte) ([]byte, error) { return tpmutil.RunCommandRaw(s.sim, cmd) }
func (simTPM) Close() error                      { return nil }

// newSim starts the simulator (one per process at a time: tests using it
// run one after another) and closes it when the test ends.
func newSim(t testing.TB) *simulator.Simulator {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// openSim opens a store on sim at the default handle, closed when the test ends.
func openSim(t testing.TB, sim *simulator.Simulator) *TPMStore {
	t.Helper()
	s, err := NewTPMStore(simTPM{sim}, 0)
	if err != nil {
		t.Fatalf("NewTPMStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// transients counts the transient objects loaded in sim.
func transients(t testing.TB, sim *simulator.Simulator) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 64}.Execute(simTPM{sim})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	return len(hs.Handle)
}

func TestSimGeneratePersistReload(t *testing.T) {
	sim := newSim(t)
	s := openSim(t, sim)
	if _, err := s.Signer(); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "no key at handle 0x81000010") {
		t.Fatalf("Signer before Generate: %v, want ErrNoKey naming the handle", err)
	}
	var g Generator = s
	gen, err := g.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	checkSignVerify(t, gen)
	pub := gen.Public().(*ecdsa.PublicKey)
	if n := transients(t, sim); n != 0 {
		t.Errorf("Generate left %d transient objects loaded", n)
	}
	if got, err := s.Signer(); err != nil || !pub.Equal(got.Public()) {
		t.Fatalf("Signer after Generate: %v, or a different key", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reboot: transient state is gone, the persistent key is not.
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	s2 := openSim(t, sim)
	k, err := s2.Signer()
	if err != nil {
		t.Fatalf("Signer after reboot: %v", err)
	}
	if !pub.Equal(k.Public()) {
		t.Fatal("the key after the reboot is not the key generated")
	}
	checkSignVerify(t, k)
	if _, isPriv := k.(crypto.Decrypter); isPriv {
		t.Error("the signer exposes more than Public and Sign")
	}
}

func TestSimCSRAndMutualTLS(t *testing.T) {
	sim := newSim(t)
	k, err := openSim(t, sim).Generate()
	if err != nil {
		t.Fatal(err)
	}
	checkCSR(t, k)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) { checkMutualTLS(t, k, v) })
	}
}

func TestSimRefuseOverwriteAndReplace(t *testing.T) {
	sim := newSim(t)
	s := openSim(t, sim)
	old, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Generate()
	if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), "0x81000010") {
		t.Fatalf("second Generate: %v, want ErrKeyExists naming the handle", err)
	}
	if k, err := s.Signer(); err != nil || !old.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("refused Generate changed the key (%v)", err)
	}

	repl, err := s.Replace()
	if err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if old.Public().(*ecdsa.PublicKey).Equal(repl.Public()) {
		t.Fatal("Replace kept the old key")
	}
	checkSignVerify(t, repl)
	if n := transients(t, sim); n != 0 {
		t.Errorf("Replace left %d transient objects loaded", n)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := old.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "was replaced") {
		t.Errorf("old signer after Replace: %v, want a 'replaced' error", err)
	}
	if k, err := s.Signer(); err != nil || !repl.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("Signer after Replace: %v, or not the new key", err)
	}

	// Replace with nothing there just generates.
	s2, err := NewTPMStore(simTPM{sim}, 0x81000020)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	k, err := s2.Replace()
	if err != nil {
		t.Fatalf("Replace on an empty handle: %v", err)
	}
	checkSignVerify(t, k)
}

func TestSimSignRefuses(t *testing.T) {
	sim := newSim(t)
	k, err := openSim(t, sim).Generate()
	if err != nil {
		t.Fatal(err)
	}
	d256 := sha256.Sum256([]byte("x"))
	d384 := sha512.Sum384([]byte("x"))
	tests := []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
		want   string
	}{
		{"SHA-384", d384[:], crypto.SHA384, "hash SHA-384 is not supported: the TPM key signs SHA-256 digests only"},
		{"SHA-1", d256[:20], crypto.SHA1, "hash SHA-1 is not supported"},
		{"no hash", d256[:], crypto.Hash(0), "is not supported"},
		{"nil opts", d256[:], nil, "opts is nil"},
		{"short digest", d256[:31], crypto.SHA256, "digest is 31 bytes, want 32"},
		{"long digest", d384[:], crypto.SHA256, "digest is 48 bytes, want 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := k.Sign(rand.Reader, tt.digest, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sign = %x, %v; want an error containing %q", sig, err, tt.want)
			}
		})
	}
}

func TestSimClosed(t *testing.T) {
	sim := newSim(t)
	s := openSim(t, sim)
	k, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var ks KeyStore = s
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ks.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := ks.Signer(); !errors.Is(err, ErrClosed) {
		t.Errorf("Signer after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Generate(); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Replace(); !errors.Is(err, ErrClosed) {
		t.Errorf("Replace after Close: %v, want ErrClosed", err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
}

// TestSimFlushesStaleTransients fills the simulator's object slots the way
// a crashed client does on swtpm; without the flush at open, Generate fails
// with TPM_RC_OBJECT_MEMORY.
func TestSimFlushesStaleTransients(t *testing.T) {
	sim := newSim(t)
	for range 3 {
		if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(simTPM{sim}); err != nil {
			t.Fatalf("leak a primary: %v", err)
		}
	}
	if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(simTPM{sim}); err == nil {
		t.Fatal("the simulator has more than 3 object slots; this test cannot show the flush matters")
	}
	s := openSim(t, sim)
	if n := transients(t, sim); n != 0 {
		t.Fatalf("%d transient objects left after open", n)
	}
	if _, err := s.Generate(); err != nil {
		t.Fatalf("Generate: %v", err)
	}
}

// TestSimRefusesForeignKey persists keys this store must not use at its
// handle and checks that Signer refuses each.
func TestSimRefusesForeignKey(t *testing.T) {
	p384 := keyTemplate
	p384.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		CurveID: tpm2.TPMECCNistP384,
		Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA384})},
	})
	p384.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	sha384 := keyTemplate
	sha384.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		CurveID: tpm2.TPMECCNistP256,
		Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA384})},
	})
	tests := []struct {
		name string
		tmpl tpm2.TPMTPublic
		want string
	}{
		{"storage key", tpm2.ECCSRKTemplate, "is not a signing key"},
		{"RSA key", tpm2.RSASRKTemplate, "is not an ECC key"},
		{"P-384", p384, "want NIST P-256"},
		{"SHA-384 scheme", sha384, "want SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSim(t)
			tpm := simTPM{sim}
			rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tt.tmpl)}.Execute(tpm)
			if err != nil {
				t.Fatalf("CreatePrimary: %v", err)
			}
			if _, err := (tpm2.EvictControl{
				Auth:             tpm2.TPMRHOwner,
				ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
				PersistentHandle: tpm2.TPMHandle(DefaultHandle),
			}).Execute(tpm); err != nil {
				t.Fatalf("EvictControl: %v", err)
			}
			s := openSim(t, sim)
			_, err = s.Signer()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "0x81000010") {
				t.Fatalf("Signer: %v, want an error containing %q", err, tt.want)
			}
			if _, err := s.Generate(); !errors.Is(err, ErrKeyExists) {
				t.Errorf("Generate over a foreign key: %v, want ErrKeyExists", err)
			}
			k, err := s.Replace()
			if err != nil {
				t.Fatalf("Replace: %v", err)
			}
			checkSignVerify(t, k)
		})
	}
}

func TestSimRetry(t *testing.T) {
	sim := newSim(t)
	ft := &flakyTPM{t: simTPM{sim}, every: 2}
	s, err := NewTPMStore(ft, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Generate()
	if err != nil {
		t.Fatalf("Generate through a TPM that answers TPM_RC_RETRY: %v", err)
	}
	checkSignVerify(t, k)
	if ft.retries == 0 {
		t.Fatal("the flaky transport never answered TPM_RC_RETRY")
	}
}

// flakyTPM answers every other command with TPM_RC_RETRY before passing
// it on.
type flakyTPM struct {
	t       transport.TPMCloser
	every   int
	n       int
	retries int
}

func (f *flakyTPM) Send(cmd []byte) ([]byte, error) {
	f.n++
	if f.n%f.every == 0 {
		f.retries++
		return rspWithRC(tpm2.TPMRCRetry), nil
	}
	return f.t.Send(cmd)
}

func (f *flakyTPM) Close() error { return f.t.Close() }

func TestSimConcurrentSign(t *testing.T) {
	sim := newSim(t)
	s := openSim(t, sim)
	k, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, 8*10)
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
				sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
				if err != nil {
					errs <- err
					continue
				}
				if !ecdsa.VerifyASN1(pub, d[:], sig) {
					errs <- fmt.Errorf("signature %d/%d does not verify", g, i)
				}
			}
		})
	}
	// Signer and Generate take the same mutex meanwhile.
	for range 5 {
		if _, err := s.Signer(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkSign(b *testing.B) {
	sim := newSim(b)
	k, err := openSim(b, sim).Generate()
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
