package tpm

// Tests of the TPM store that need no TPM, and helpers shared by the
// simulator (tpmsim_test.go, cgo) and swtpm (swtpm_test.go) tests.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"
)

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    device
		wantErr string
	}{
		{"/dev/tpmrm0", device{path: "/dev/tpmrm0"}, ""},
		{"/dev/tpm0", device{path: "/dev/tpm0"}, ""},
		{"tcp://127.0.0.1:2321", device{cmdAddr: "127.0.0.1:2321", platAddr: "127.0.0.1:2322"}, ""},
		{"tcp://localhost:1", device{cmdAddr: "localhost:1", platAddr: "localhost:2"}, ""},
		{"tcp://[::1]:2321", device{cmdAddr: "[::1]:2321", platAddr: "[::1]:2322"}, ""},
		{"tcp://127.0.0.1", device{}, "want tcp://HOST:PORT"},
		{"tcp://:2321", device{}, "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:2321/x", device{}, "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:0", device{}, "is not 1 to 65534"},
		{"tcp://127.0.0.1:65535", device{}, "is not 1 to 65534"},
		{"tcp://127.0.0.1:http", device{}, "is not 1 to 65534"},
		{"unix:///run/swtpm.sock", device{}, "want a device path"},
		{"tpmrm0", device{}, "want an absolute device path"},
		{"", device{}, "want an absolute device path"},
		{"/dev/tpm\x00", device{}, "want an absolute device path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDevice(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseDevice(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDevice(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(device{})); diff != "" {
				t.Errorf("parseDevice(%q) (-want +got):\n%s", tt.in, diff)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func FuzzParseDevice(f *testing.F) {
	for _, s := range []string{"/dev/tpmrm0", "tcp://127.0.0.1:2321", "tcp://[::1]:1", "tcp://h:65534", "x://y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDevice(s)
		if err != nil {
			return
		}
		if d.path != "" {
			if d.path != s || !strings.HasPrefix(s, "/") {
				t.Fatalf("parseDevice(%q) accepted path %q", s, d.path)
			}
			return
		}
		for _, a := range []string{d.cmdAddr, d.platAddr} {
			_, p, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatalf("parseDevice(%q) gave address %q: %v", s, a, err)
			}
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("parseDevice(%q) gave port %q", s, p)
			}
		}
	})
}

func TestTPMConfigValidate(t *testing.T) {
	tests := []struct {
		cfg     TPMConfig
		wantErr string
	}{
		{TPMConfig{}, ""},
		{TPMConfig{Device: "tcp://127.0.0.1:2321", Handle: 0x81000000}, ""},
		{TPMConfig{Handle: 0x817FFFFF}, ""},
		{TPMConfig{Handle: 0x81800000}, "TPM handle 0x81800000 is not an owner persistent handle (0x81000000 to 0x817fffff)"},
		{TPMConfig{Handle: 0x80000001}, "not an owner persistent handle"},
		{TPMConfig{Handle: 0x01000000}, "not an owner persistent handle"},
		{TPMConfig{Device: "tpm", Handle: 1}, "want an absolute device path"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.cfg, err, tt.wantErr)
		}
	}
	if err := (TPMConfig{Device: "tpm", Handle: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "handle") {
		t.Errorf("Validate does not report every problem: %v", err)
	}
}

func TestOpenTPMNoDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpmrm0")
	_, err := OpenTPM(TPMConfig{Device: path})
	want := "open " + path + ": no such file or directory: is the TPM enabled (dtoverlay=tpm-slb9670) and is this user in group tss?"
	if err == nil || err.Error() != want {
		t.Fatalf("OpenTPM: %v\nwant: %s", err, want)
	}
	if !errors.Is(err, ErrNoTPM) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenTPM error %v does not wrap ErrNoTPM and fs.ErrNotExist", err)
	}

	// The same through OpenKeyStore, as the agent calls it.
	if _, err := OpenKeyStore("tpm", "", TPMConfig{Device: path}); !errors.Is(err, ErrNoTPM) {
		t.Errorf("OpenKeyStore(tpm): %v, want ErrNoTPM", err)
	}
}

func TestOpenTPMNotADevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpmrm0")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenTPM(TPMConfig{Device: path})
	if err == nil || !strings.Contains(err.Error(), "open "+path+": TPM file is not a device") {
		t.Fatalf("OpenTPM: %v, want \"TPM file is not a device\" naming %s", err, path)
	}
	if errors.Is(err, ErrNoTPM) {
		t.Errorf("OpenTPM error %v wraps ErrNoTPM for a file that exists", err)
	}
}

func TestOpenTPMNoSwtpm(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dev := "tcp://" + addr
	_, err = OpenTPM(TPMConfig{Device: dev})
	if !errors.Is(err, ErrNoTPM) || !strings.Contains(err.Error(), "open "+dev+": ") || !strings.Contains(err.Error(), "is swtpm running?") {
		t.Fatalf("OpenTPM: %v, want ErrNoTPM naming %s and swtpm", err, dev)
	}
}

func TestOpenTPMBadConfig(t *testing.T) {
	_, err := OpenTPM(TPMConfig{Device: "/dev/tpmrm0", Handle: 0x81000001 | 0x00800000})
	if err == nil || !strings.Contains(err.Error(), "not an owner persistent handle") {
		t.Fatalf("OpenTPM: %v, want a handle error", err)
	}
}

func TestOpenKeyStore(t *testing.T) {
	ks, err := OpenKeyStore("file", "/x/device.key", TPMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if fs, ok := ks.(*FileStore); !ok || fs.Path() != "/x/device.key" {
		t.Errorf("OpenKeyStore(file) = %v, want a FileStore for /x/device.key", ks)
	}
	for _, tt := range []struct{ kind, path, want string }{
		{"pkcs11", "/x", `unknown kind "pkcs11": want "file" or "tpm"`},
		{"file", "", "needs a key path"},
	} {
		if _, err := OpenKeyStore(tt.kind, tt.path, TPMConfig{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("OpenKeyStore(%q, %q): %v, want %q", tt.kind, tt.path, err, tt.want)
		}
	}
}

// scriptedTPM answers each command with the next canned response.
type scriptedTPM struct {
	rsps   [][]byte
	sent   int
	closed bool
}

func (s *scriptedTPM) Send([]byte) ([]byte, error) {
	if s.sent >= len(s.rsps) {
		return nil, errors.New("no more responses")
	}
	s.sent++
	return s.rsps[s.sent-1], nil
}

func (s *scriptedTPM) Close() error { s.closed = true; return nil }

// rspWithRC is a bare response header with response code rc.
func rspWithRC(rc tpm2.TPMRC) []byte {
	b := make([]byte, 10)
	binary.BigEndian.PutUint16(b, uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(b[2:], 10)
	binary.BigEndian.PutUint32(b[6:], uint32(rc))
	return b
}

func TestRetryTPM(t *testing.T) {
	ok := rspWithRC(0)
	retry, yielded, fail := rspWithRC(tpm2.TPMRCRetry), rspWithRC(tpm2.TPMRCYielded), rspWithRC(tpm2.TPMRCFailure)
	tests := []struct {
		name     string
		rsps     [][]byte
		wantRsp  []byte
		wantSent int
	}{
		{"success", [][]byte{ok}, ok, 1},
		{"retry then success", [][]byte{retry, yielded, ok}, ok, 3},
		{"failure is not retried", [][]byte{fail, ok}, fail, 1},
		{"gives up", [][]byte{retry, retry, retry, retry, retry, retry, ok}, retry, maxRetries + 1},
		{"short response", [][]byte{{1, 2}}, []byte{1, 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scriptedTPM{rsps: tt.rsps}
			got, err := retryTPM{s}.Send([]byte("cmd"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.wantRsp) || s.sent != tt.wantSent {
				t.Errorf("Send = %x after %d sends, want %x after %d", got, s.sent, tt.wantRsp, tt.wantSent)
			}
		})
	}
}

func TestNewTPMStoreFailure(t *testing.T) {
	s := &scriptedTPM{rsps: [][]byte{rspWithRC(tpm2.TPMRCFailure)}}
	_, err := NewTPMStore(s, 0)
	if !errors.Is(err, tpm2.TPMRCFailure) || !strings.Contains(err.Error(), "flush stale transient objects") {
		t.Fatalf("NewTPMStore: %v, want TPM_RC_FAILURE from the flush", err)
	}
	if _, err := NewTPMStore(nil, 0); err == nil {
		t.Error("NewTPMStore(nil) succeeded")
	}
	if _, err := NewTPMStore(&scriptedTPM{}, 0x81800000); err == nil || !strings.Contains(err.Error(), "not an owner persistent handle") {
		t.Errorf("NewTPMStore with a platform handle: %v", err)
	}
}

// testCA is a certificate authority for the CSR and mutual-TLS checks.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{key: key, cert: cert, pool: pool}
}

// issue signs a leaf certificate for pub.
func (ca *testCA) issue(t testing.TB, cn string, pub crypto.PublicKey, usage x509.ExtKeyUsage) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// checkSignVerify signs a digest with s and verifies it against s.Public().
func checkSignVerify(t *testing.T, s crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte("telemetry/chocolate-box-1"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("Public() = %T, want a P-256 *ecdsa.PublicKey", s.Public())
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("ecdsa.VerifyASN1 rejects the signature %x", sig)
	}
}

// checkCSR makes a CSR with s and checks its signature and public key.
func checkCSR(t *testing.T, s crypto.Signer) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "chocolate-box-1"},
	}, s)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR CheckSignature: %v", err)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("CSR signature algorithm = %v, want ECDSA-SHA256", csr.SignatureAlgorithm)
	}
	if !s.Public().(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Error("CSR public key is not the signer's")
	}
}

// checkMutualTLS completes a TLS handshake at version v between a Go server
// that requires and verifies a client certificate and a client whose
// certificate's private key is s, and checks the server saw that
// certificate.
func checkMutualTLS(t *testing.T, s crypto.Signer, v uint16) {
	t.Helper()
	ca := newTestCA(t)
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := tls.Certificate{Certificate: [][]byte{ca.issue(t, "127.0.0.1", &serverKey.PublicKey, x509.ExtKeyUsageServerAuth)}, PrivateKey: serverKey}
	clientDER := ca.issue(t, "chocolate-box-1", s.Public(), x509.ExtKeyUsageClientAuth)
	clientCert := tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: s}

	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	srv := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   v,
		MaxVersion:   v,
	})
	cli := tls.Client(cc, &tls.Config{
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      ca.pool,
		ServerName:   "127.0.0.1",
		MinVersion:   v,
		MaxVersion:   v,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srvErr := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			sc.Close() // unblock the client
		}
		srvErr <- err
	}()
	cliErr := cli.HandshakeContext(ctx)
	if cliErr != nil {
		cc.Close()
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server handshake: %v (client: %v)", err, cliErr)
	}
	if cliErr != nil {
		t.Fatalf("client handshake: %v", cliErr)
	}
	st := srv.ConnectionState()
	if st.Version != v {
		t.Errorf("negotiated version %x, want %x", st.Version, v)
	}
	if len(st.PeerCertificates) == 0 || !bytes.Equal(st.PeerCertificates[0].Raw, clientDER) {
		t.Error("server did not see the client certificate")
	}
}
