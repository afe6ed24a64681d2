package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/tpm"
)

// Check outcomes.
const (
	pass = "PASS"
	warn = "WARN"
	fail = "FAIL"
	skip = "SKIP"
)

// checkResult is one diag line.
type checkResult struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// diagEnv is what diag takes from the machine; tests replace parts.
type diagEnv struct {
	cfgPath  string
	override func(*config.Config) // run's flags (--state-dir, --endpoint, ...), as run applies them
	socket   string
	timeout  time.Duration
	now      func() time.Time
	resolver *net.Resolver
	// ntpSynced reports whether the kernel says the clock is synchronised
	// (known is false where it cannot tell).
	ntpSynced func() (synced, known bool)
}

const diagText = `Checks, in order: config; key store signs; certificate (chain, expiry); clock;
DNS; TCP; TLS with server verification; MQTT connect as the thing; a subscribe
round trip on the thing's shadow topics; the configured GPIO/I2C devices.
Each line is PASS, WARN, FAIL or SKIP with a fix. Works without the agent; when
the agent is running and connected it skips the MQTT steps (AWS allows one
connection per client ID, so diag would disconnect it). Give it the flags
the agent runs with: --config, --state-dir and any of run's overrides.`

func diagSetup(fs *flag.FlagSet) runFunc {
	ov := runFlags(fs)
	return func(x *inv) error {
		return diag(x, func(c *config.Config) {
			x.overrideStateDir(c)
			ov.apply(c)
		})
	}
}

func diag(x *inv, override func(*config.Config)) error {
	stdout := x.stdout
	env := diagEnv{cfgPath: x.configFile(), override: override, socket: x.socket, timeout: x.timeout, now: now, resolver: net.DefaultResolver, ntpSynced: ntpSynced}
	results := runDiag(context.Background(), env)
	if x.json {
		if err := printJSON(stdout, results); err != nil {
			return err
		}
	} else {
		io.WriteString(stdout, renderDiag(results))
	}
	nfail := 0
	for _, r := range results {
		if r.Status == fail {
			nfail++
		}
	}
	if nfail > 0 {
		return &exitError{code: exitFail, err: fmt.Errorf("%d of %d checks FAILed (each FAIL line says what to fix)", nfail, len(results)), shown: true}
	}
	return nil
}

func renderDiag(results []checkResult) string {
	var b strings.Builder
	nfail, nwarn := 0, 0
	for _, r := range results {
		fmt.Fprintf(&b, "%-4s  %-12s %s\n", r.Status, r.Check, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(&b, "      %-12s fix: %s\n", "", r.Fix)
		}
		switch r.Status {
		case fail:
			nfail++
		case warn:
			nwarn++
		}
	}
	fmt.Fprintf(&b, "\n%d checks: %d failed, %d warnings\n", len(results), nfail, nwarn)
	return b.String()
}

// diagRun carries what the checks learn from each other.
type diagRun struct {
	env    diagEnv
	out    []checkResult
	cfg    config.Config
	signer crypto.Signer
	// keyStore holds signer's key; a TPM key store's signer fails once it
	// is closed, so it stays open until runDiag ends.
	keyStore tpm.KeyStore
	chain    [][]byte
	leaf     *x509.Certificate
	roots    *x509.CertPool
	addrs    []string // resolved endpoint addresses
	tcpOK    bool
	tlsOK    bool
	running  bool // the agent answers on its socket
	agentUp  bool // and is connected to the cloud
	sensors  *localapi.Sensors
	view     *agentView // what the running agent did (diagactivity.go); nil when it is not running
}

// close releases what the checks opened.
func (d *diagRun) close() {
	if d.keyStore != nil {
		_ = d.keyStore.Close()
	}
}

func (d *diagRun) add(check, status, detail, fix string) {
	d.out = append(d.out, checkResult{Check: check, Status: status, Detail: detail, Fix: fix})
}

func (d *diagRun) skip(check, why string) { d.add(check, skip, why, "") }

// runDiag runs every check in order. A check whose prerequisite failed is
// SKIPped with the reason.
func runDiag(ctx context.Context, env diagEnv) []checkResult {
	d := &diagRun{env: env}
	defer d.close()
	if !d.checkConfig() {
		for _, c := range append(append([]string{"identity", "agent", "degraded"}, activityChecks...), "state files", "key store", "certificate", "clock", "dns", "tcp", "tls", "mqtt", "round trip", "hardware") {
			d.skip(c, "needs a valid config")
		}
		return d.out
	}
	d.checkIdentityThing()
	d.checkAgent(ctx)
	d.checkDegraded(ctx)
	d.checkActivity()
	d.checkState()
	d.checkKeyStore()
	d.checkCertificate()
	d.checkClock()
	d.checkDNS(ctx)
	d.checkTCP(ctx)
	d.checkTLS(ctx)
	d.checkMQTT(ctx)
	d.checkHardware(ctx)
	return d.out
}

func (d *diagRun) checkConfig() bool {
	cfg, err := loadConfigWith(d.env.cfgPath, d.env.override)
	if err != nil {
		msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
		fix := "fix the listed keys (iotagent config validate " + d.env.cfgPath + "; reference: " + configReference + ")"
		if errors.Is(err, os.ErrNotExist) {
			fix = "give the config the agent runs with: iotagent diag --config FILE (and its --state-dir)"
		}
		d.add("config", fail, msg, fix)
		return false
	}
	d.cfg = cfg
	d.add("config", pass, d.env.cfgPath+" is valid (thing "+cfg.ThingName+")", "")
	return true
}

func (d *diagRun) checkAgent(ctx context.Context) {
	sock := d.env.socket
	if sock == "" && d.cfg.LocalAPI.Enabled {
		sock = d.cfg.LocalAPI.Socket
	}
	if sock == "" {
		d.add("agent", pass, "local API disabled in the config: cannot tell whether the agent runs", "")
		return
	}
	c := localapi.NewClient(sock, min(d.env.timeout, 3*time.Second))
	var conn localapi.Connection
	err := c.Get(ctx, localapi.SectionConnection, &conn)
	switch {
	case errors.Is(err, localapi.ErrNotRunning):
		d.add("agent", pass, "not running (nothing on "+sock+"): diag connects as the thing itself", "")
		return
	case err != nil:
		d.add("agent", warn, "cannot ask the agent: "+err.Error(), "run diag as root or as a member of localapi.group")
		return
	}
	d.running, d.agentUp = true, conn.Connected
	d.view = readAgentView(ctx, c, conn)
	var se localapi.Sensors
	if c.Get(ctx, localapi.SectionSensors, &se) == nil {
		d.sensors = &se
	}
	if conn.Connected {
		d.add("agent", pass, "running and connected to "+conn.Endpoint, "")
		return
	}
	d.add("agent", warn, "running but NOT connected; last error: "+orNone(conn.LastError), "the checks below say where the connection fails")
}

func (d *diagRun) checkKeyStore() {
	id := d.cfg.Identity
	ks, err := tpm.OpenKeyStore(id.KeyStore, id.Key, tpm.TPMConfig{Device: id.TPM.Device, Handle: uint32(id.TPM.Handle)})
	what := "file " + id.Key
	if id.KeyStore == "tpm" {
		what = fmt.Sprintf("TPM %s handle %v", id.TPM.Device, id.TPM.Handle)
	}
	if err == nil {
		d.keyStore = ks // open until the checks that sign (tls, mqtt) are done: see close
		d.signer, err = ks.Signer()
	}
	if err != nil {
		d.add("key store", fail, what+": "+err.Error(), keyStoreFix(err))
		return
	}
	digest := sha256.Sum256([]byte("iotagent diag"))
	var opts crypto.SignerOpts = crypto.SHA256
	msg := digest[:]
	if _, ok := d.signer.Public().(ed25519.PublicKey); ok {
		opts, msg = crypto.Hash(0), []byte("iotagent diag")
	}
	sig, err := d.signer.Sign(rand.Reader, msg, opts)
	if err == nil && !verify(d.signer.Public(), msg, sig) {
		err = errors.New("the signature does not verify with the key's public half")
	}
	if err != nil {
		d.add("key store", fail, what+": cannot sign: "+err.Error(), "check the key store; with a TPM, that the agent's user may use /dev/tpmrm0 (group tss)")
		d.signer = nil
		return
	}
	d.add("key store", pass, what+" signs ("+keyType(d.signer.Public())+")", "")
}

func keyStoreFix(err error) string {
	switch {
	case errors.Is(err, tpm.ErrUnsafePermissions):
		return "make the key readable by its owner only (the error names the chmod)"
	case errors.Is(err, tpm.ErrNoKey):
		return "provision the device (iotagent provision) or point identity.key at the key"
	case errors.Is(err, tpm.ErrNoTPM):
		return "check that the TPM is enabled (dtoverlay=tpm-slb9670 on a Pi) and /dev/tpmrm0 exists"
	}
	return "check identity.key_store and identity.key"
}

func verify(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, msg, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, msg, sig) == nil || rsa.VerifyPSS(k, crypto.SHA256, msg, sig, nil) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	}
	return false
}

func keyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func (d *diagRun) checkCertificate() {
	path := d.cfg.Identity.Cert
	data, err := os.ReadFile(path)
	if err != nil {
		d.add("certificate", fail, err.Error(), "provision the device (iotagent provision) or set identity.cert")
		return
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			d.chain = append(d.chain, b.Bytes)
		}
	}
	if len(d.chain) == 0 {
		d.add("certificate", fail, path+": no PEM certificate in it", "point identity.cert at the device certificate (PEM)")
		return
	}
	leaf, err := x509.ParseCertificate(d.chain[0])
	if err != nil {
		d.add("certificate", fail, path+": "+err.Error(), "replace the file with the certificate AWS IoT issued")
		return
	}
	d.leaf = leaf
	var rootCerts []*x509.Certificate
	if caPEM, err := os.ReadFile(d.cfg.MQTT.RootCA); err == nil {
		d.roots = x509.NewCertPool()
		d.roots.AppendCertsFromPEM(caPEM)
		rootCerts = parseCerts(caPEM)
	}
	if d.signer != nil {
		if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(d.signer.Public()) {
			d.add("certificate", fail, fmt.Sprintf("%s does not belong to the key in the key store", path),
				"identity.cert and identity.key are from different devices or provisioning runs: restore the pair")
			d.leaf = nil
			return
		}
	}
	now := d.env.now()
	days := agent.DaysLeft(now, leaf.NotAfter)
	who := fmt.Sprintf("%s, issued by %s", leaf.Subject, leaf.Issuer)
	chainNote, chainErr := verifyChain(leaf, d.chain[1:], d.roots, rootCerts, now)
	if chainErr != nil {
		d.add("certificate", fail, who+": chain invalid: "+chainErr.Error(), "replace the certificate with a valid one from AWS IoT")
		return
	}
	switch {
	case days < 0:
		d.add("certificate", fail, fmt.Sprintf("%s: EXPIRED on %s (%d days ago)", who, stamp(leaf.NotAfter), -days),
			"issue a new certificate (or re-provision) and register it in AWS IoT; if the date looks wrong, check the clock")
	case now.Before(leaf.NotBefore):
		d.add("certificate", warn, fmt.Sprintf("%s: not valid before %s; %s", who, stamp(leaf.NotBefore), chainNote), "see the clock check")
	case days < 30:
		d.add("certificate", warn, fmt.Sprintf("%s: expires %s, %d days left; %s", who, stamp(leaf.NotAfter), days, chainNote), "renew the certificate soon")
	default:
		d.add("certificate", pass, fmt.Sprintf("%s: valid until %s (%d days left); %s", who, stamp(leaf.NotAfter), days, chainNote), "")
	}
}

func (d *diagRun) checkClock() {
	now := d.env.now()
	synced, known := false, false
	if d.env.ntpSynced != nil {
		synced, known = d.env.ntpSynced()
	}
	ntp := "NTP state unknown"
	switch {
	case known && synced:
		ntp = "NTP synchronised"
	case known:
		ntp = "NOT NTP-synchronised"
	}
	if d.leaf != nil && now.Before(d.leaf.NotBefore) {
		why := "the clock is behind"
		if known && !synced {
			why = "this device has no RTC (a Raspberry Pi has none) and NTP has not synced yet"
		}
		d.add("clock", fail, fmt.Sprintf("the clock reads %s, before the certificate's NotBefore %s: %s; TLS will fail", stamp(now), stamp(d.leaf.NotBefore), why),
			"let NTP sync (network up, UDP 123 open; check `timedatectl`), or set the time: date -s '…'")
		return
	}
	if known && !synced {
		d.add("clock", warn, fmt.Sprintf("%s UTC, %s", now.UTC().Format("2006-01-02 15:04:05"), ntp),
			"enable time sync: timedatectl set-ntp true (a Pi has no RTC: its clock is wrong after a power cut until NTP syncs)")
		return
	}
	d.add("clock", pass, fmt.Sprintf("%s UTC, %s", now.UTC().Format("2006-01-02 15:04:05"), ntp), "")
}

func (d *diagRun) checkDNS(ctx context.Context) {
	host := d.cfg.MQTT.Endpoint
	if net.ParseIP(host) != nil {
		d.addrs = []string{host}
		d.add("dns", pass, host+" is an IP address: nothing to resolve", "")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	addrs, err := d.env.resolver.LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		var de *net.DNSError
		detail := fmt.Sprintf("cannot resolve %s: %v", host, err)
		fix := "check mqtt.endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS) and /etc/resolv.conf"
		if errors.As(err, &de) && de.IsNotFound {
			detail = fmt.Sprintf("%s does not exist (NXDOMAIN)", host)
		} else if errors.As(err, &de) && de.IsTimeout {
			fix = "no DNS server answers: check the network and /etc/resolv.conf"
		}
		d.add("dns", fail, detail, fix)
		return
	}
	d.addrs = addrs
	d.add("dns", pass, fmt.Sprintf("%s resolves to %s", host, strings.Join(addrs, ", ")), "")
}

func (d *diagRun) addr() string {
	return net.JoinHostPort(d.addrs[0], strconv.Itoa(d.cfg.MQTT.Port))
}

func (d *diagRun) checkTCP(ctx context.Context) {
	if len(d.addrs) == 0 {
		d.skip("tcp", "needs DNS")
		return
	}
	dl := net.Dialer{Timeout: d.connectTimeout()}
	c, err := dl.DialContext(ctx, "tcp", d.addr())
	if err != nil {
		fix := "check the network route and any firewall"
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			fix = fmt.Sprintf("nothing listens on port %d there: check mqtt.port (8883, or 443 with \"alpn\": true)", d.cfg.MQTT.Port)
		case errors.As(err, &ne) && ne.Timeout():
			fix = fmt.Sprintf("no answer: a firewall may drop outbound port %d; try \"port\": 443 with \"alpn\": true", d.cfg.MQTT.Port)
		}
		d.add("tcp", fail, fmt.Sprintf("connect %s: %v", d.addr(), err), fix)
		return
	}
	c.Close()
	d.tcpOK = true
	d.add("tcp", pass, "connected to "+d.addr(), "")
}

func (d *diagRun) connectTimeout() time.Duration {
	t := time.Duration(d.cfg.MQTT.ConnectTimeoutS) * time.Second
	if t <= 0 || t > d.env.timeout {
		t = d.env.timeout
	}
	return t
}

// tlsConfig is the agent's TLS configuration: server verified against
// root_ca, the device certificate presented.
func (d *diagRun) tlsConfig() *tls.Config {
	cfg := &tls.Config{ServerName: d.cfg.MQTT.TLSServerName(), RootCAs: d.roots, MinVersion: tls.VersionTLS12}
	if d.signer != nil && d.leaf != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: d.chain, PrivateKey: d.signer, Leaf: d.leaf}}
	}
	if d.cfg.MQTT.ALPN {
		cfg.NextProtos = []string{"x-amzn-mqtt-ca"}
	}
	return cfg
}

func (d *diagRun) dialTLS(ctx context.Context) (*tls.Conn, error) {
	td := tls.Dialer{NetDialer: &net.Dialer{Timeout: d.connectTimeout()}, Config: d.tlsConfig()}
	ctx, cancel := context.WithTimeout(ctx, d.connectTimeout())
	defer cancel()
	c, err := td.DialContext(ctx, "tcp", d.addr())
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if d.cfg.MQTT.ALPN && tc.ConnectionState().NegotiatedProtocol != "x-amzn-mqtt-ca" {
		tc.Close()
		return nil, fmt.Errorf("server did not accept ALPN x-amzn-mqtt-ca (got %q)", tc.ConnectionState().NegotiatedProtocol)
	}
	return tc, nil
}

func (d *diagRun) checkTLS(ctx context.Context) {
	if !d.tcpOK {
		d.skip("tls", "needs TCP")
		return
	}
	if d.roots == nil {
		d.add("tls", fail, "cannot read root_ca "+d.cfg.MQTT.RootCA, "set mqtt.root_ca to the server's CA (AmazonRootCA1.pem for AWS IoT Core)")
		return
	}
	c, err := d.dialTLS(ctx)
	if err != nil {
		d.add("tls", fail, tlsProblem(err, d.cfg), tlsFix(err, d.cfg))
		return
	}
	if d.signer == nil || d.leaf == nil {
		st := c.ConnectionState()
		c.Close()
		d.add("tls", warn, fmt.Sprintf("%s, server %s verified against root_ca; no usable device certificate to present (see above)",
			tlsVersion(st.Version), d.cfg.MQTT.TLSServerName()), "fix the key store and certificate first")
		return
	}
	// A server that rejects the client certificate says so only when it
	// reads the first record (TLS 1.3): provoke that with a read.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var one [1]byte
	_, rerr := c.Read(one[:])
	st := c.ConnectionState()
	c.Close()
	var alert tls.AlertError
	if errors.As(rerr, &alert) || strings.Contains(fmt.Sprint(rerr), "remote error") {
		d.add("tls", fail, "the server rejected the device certificate: "+rerr.Error(),
			"the certificate's CA is not registered with the server (AWS: register the CA, or use a certificate AWS IoT issued)")
		return
	}
	peer := st.PeerCertificates[0]
	d.tlsOK = true
	d.add("tls", pass, fmt.Sprintf("%s, server %s verified against root_ca (issuer %s)", tlsVersion(st.Version), d.cfg.MQTT.TLSServerName(), peer.Issuer), "")
}

func tlsVersion(v uint16) string {
	return strings.Replace(tls.VersionName(v), "TLS ", "TLS", 1)
}

// tlsProblem names why a handshake failed, the CA mismatch above all.
func tlsProblem(err error, cfg config.Config) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		issuer := "an unknown CA"
		if unknown.Cert != nil {
			issuer = unknown.Cert.Issuer.String()
		}
		return fmt.Sprintf("CA mismatch: the server's certificate is issued by %q, which root_ca %s does not contain", issuer, cfg.MQTT.RootCA)
	case errors.As(err, &host):
		return fmt.Sprintf("name mismatch: the server's certificate is not for %q (%v)", cfg.MQTT.TLSServerName(), err)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate is expired or not yet valid at this device's time: " + err.Error()
	}
	return "handshake with " + cfg.MQTT.Endpoint + ": " + err.Error()
}

func tlsFix(err error, cfg config.Config) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "point mqtt.root_ca at the CA that signs the server (AmazonRootCA1.pem for AWS IoT Core; iotsim's ca/ca.pem for iotsim)"
	case errors.As(err, &host):
		return "set mqtt.endpoint to the name on the server's certificate, or mqtt.server_name"
	case errors.As(err, &invalid):
		return "check the clock (see above)"
	}
	return "check that the endpoint speaks MQTT over TLS on this port"
}

// checkMQTT connects as the thing and makes a shadow get round trip.
func (d *diagRun) checkMQTT(ctx context.Context) {
	thing := d.cfg.ThingName
	switch {
	case d.agentUp:
		why := fmt.Sprintf("the agent is running and connected as %s: AWS allows one connection per client ID, so diag would disconnect it", thing)
		fix := "to run these too: systemctl stop iotagent; iotagent diag; systemctl start iotagent"
		d.add("mqtt", warn, "skipped: "+why, fix)
		d.add("round trip", warn, "skipped: the agent's own connection is up (see the mqtt line)", fix)
		return
	case d.signer == nil || d.leaf == nil:
		d.skip("mqtt", "needs a usable key and certificate")
		d.skip("round trip", "needs MQTT")
		return
	case !d.tlsOK:
		d.skip("mqtt", "needs TLS")
		d.skip("round trip", "needs MQTT")
		return
	}
	timeout := d.connectTimeout()
	dctx, cancel := context.WithTimeout(ctx, timeout+d.env.timeout)
	defer cancel()
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + d.addr()).
		SetClientID(thing).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(timeout).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return d.dialTLS(dctx) })
	pc := mqtt.NewClient(opts)
	tok := pc.Connect()
	if !tok.WaitTimeout(timeout + time.Second) {
		d.add("mqtt", fail, fmt.Sprintf("no CONNACK within %s", timeout), "the server accepted TLS but not MQTT: check the port and the endpoint")
		d.skip("round trip", "needs MQTT")
		return
	}
	if err := tok.Error(); err != nil {
		d.add("mqtt", fail, fmt.Sprintf("connect as %s: %v", thing, err),
			fmt.Sprintf("the server hung up: in AWS IoT the certificate must be registered and ACTIVE, attached to thing %s, with a policy allowing iot:Connect on client/%s", thing, thing))
		d.skip("round trip", "needs MQTT")
		return
	}
	defer pc.Disconnect(250)
	d.add("mqtt", pass, fmt.Sprintf("connected to %s as client ID %s", d.addr(), thing), "")
	d.roundTrip(dctx, pc, thing)
}

func (d *diagRun) roundTrip(ctx context.Context, pc mqtt.Client, thing string) {
	prefix := "$aws/things/" + thing + "/shadow/get"
	token := fmt.Sprintf("diag-%d", d.env.now().UnixNano())
	got := make(chan string, 1)
	st := pc.Subscribe(prefix+"/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r struct {
			ClientToken string `json:"clientToken"`
		}
		if json.Unmarshal(m.Payload(), &r) == nil && r.ClientToken == token {
			select {
			case got <- m.Topic():
			default:
			}
		}
	})
	fix := fmt.Sprintf("the policy must allow iot:Subscribe on topicfilter/%s/* and iot:Publish, iot:Receive on topic/%s/*", prefix[:len(prefix)-4], prefix[:len(prefix)-4])
	if !st.WaitTimeout(d.env.timeout) || st.Error() != nil {
		d.add("round trip", fail, fmt.Sprintf("subscribe %s/+: %v", prefix, st.Error()), fix)
		return
	}
	if sub, ok := st.(*mqtt.SubscribeToken); ok {
		for _, q := range sub.Result() {
			if q == 0x80 {
				d.add("round trip", fail, "the server refused the subscription to "+prefix+"/+", fix)
				return
			}
		}
	}
	start := time.Now()
	pt := pc.Publish(prefix, 1, false, fmt.Sprintf(`{"clientToken":%q}`, token))
	if !pt.WaitTimeout(d.env.timeout) || pt.Error() != nil {
		d.add("round trip", fail, fmt.Sprintf("publish %s: %v", prefix, pt.Error()), fix)
		return
	}
	select {
	case topic := <-got:
		took := time.Since(start).Round(100 * time.Microsecond)
		if denied, fix := d.jobsSubscriptions(pc, thing); denied != "" {
			d.add("round trip", fail, denied, fix)
			return
		}
		d.add("round trip", pass, fmt.Sprintf("shadow get answered on %s in %s%s", topic[strings.LastIndex(topic, "/")+1:], took, d.jobsNote()), "")
	case <-time.After(d.env.timeout):
		d.add("round trip", fail, fmt.Sprintf("no answer on %s/+ within %s", prefix, d.env.timeout), fix)
	case <-ctx.Done():
		d.add("round trip", fail, "no answer: "+ctx.Err().Error(), fix)
	}
}

// checkHardware checks the configured GPIO and I2C devices: through the
// agent's last values when it runs (it holds the pins), else directly.
func (d *diagRun) checkHardware(ctx context.Context) {
	if len(d.cfg.DeviceParts()) == 0 {
		d.add("hardware", pass, "no sensors configured", "")
		return
	}
	if !agent.NeedsHost(d.cfg) {
		d.add("hardware", pass, "every part is simulated (\"sim\": true): no GPIO or I2C to check", "")
		return
	}
	if d.running && d.sensors != nil {
		if d.sensors.ReadErrors > 0 {
			d.add("hardware", warn, fmt.Sprintf("in use by the agent: %d read errors, last: %s", d.sensors.ReadErrors, d.sensors.LastError),
				"check the wiring and that I2C is enabled (raspi-config)")
			return
		}
		d.add("hardware", pass, "in use by the running agent, reading without errors", "")
		return
	}
	hw, err := openHardware(d.cfg)
	if err != nil {
		d.add("hardware", fail, err.Error(), "check the wiring, that I2C is enabled (raspi-config) and that this user is in the gpio and i2c groups")
		return
	}
	defer func() {
		if hw.Close != nil {
			_ = hw.Close()
		}
	}()
	se := readDirect(ctx, hw, &d.cfg)
	var bad []string
	var good []string
	for _, in := range se.Inputs {
		if in.Error != "" {
			bad = append(bad, in.Name+": "+in.Error)
		} else {
			good = append(good, in.Name)
		}
	}
	if se.Env != nil {
		if se.Env.Error != "" {
			bad = append(bad, se.Env.Sensor+": "+se.Env.Error)
		} else {
			good = append(good, fmt.Sprintf("%s (%.1f °C)", se.Env.Sensor, se.Env.TemperatureC))
		}
	}
	names := make([]string, 0, len(se.Parts))
	for n := range se.Parts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if se.Env != nil && n == se.Env.Sensor {
			continue
		}
		if e, _ := se.Parts[n]["error"].(string); e != "" {
			bad = append(bad, n+": "+e)
		} else {
			good = append(good, n)
		}
	}
	if len(bad) > 0 {
		d.add("hardware", fail, strings.Join(bad, "; "), "check the wiring and the I2C address (0x76 with SDO to GND, 0x77 to VDD)")
		return
	}
	d.add("hardware", pass, "present: "+strings.Join(good, ", "), "")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// verifyChain checks the device certificate's chain. At a time inside the
// certificate's validity it is a full verification; outside it (expired,
// or a clock behind) only the signature is checked against the bundle
// and root_ca, so that expiry is reported as such and not as a broken
// chain. An issuer that is not in root_ca is normal for AWS-issued
// certificates and not an error.
func verifyChain(leaf *x509.Certificate, rest [][]byte, roots *x509.CertPool, rootCerts []*x509.Certificate, now time.Time) (string, error) {
	const unknownNote = "issuer not in root_ca, so not verified here (normal for certificates AWS IoT issues; AWS checks them)"
	inter := x509.NewCertPool()
	var issuers []*x509.Certificate
	for _, der := range rest {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
			issuers = append(issuers, c)
		}
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		for _, c := range append(issuers, rootCerts...) {
			if leaf.CheckSignatureFrom(c) == nil {
				return "signed by " + c.Subject.String(), nil
			}
		}
		return unknownNote, nil
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
		return "chain verified to root_ca", nil
	case errors.As(err, &unknown):
		return unknownNote, nil
	}
	return "", err
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}
