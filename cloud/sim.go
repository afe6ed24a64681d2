// Package cloud is iotsim: a small, faithful stand-in for AWS IoT Core.
// Sim wires its parts (each in a subpackage): store (bbolt state that
// survives restarts), pki (iotsim's CA and server certificates), registry
// (things and certificates), broker (MQTT over mutual TLS with AWS's
// rules), shadow (the Device Shadow service) and api (the REST control and
// data planes that the aws CLI drives with --endpoint-url).
//
// Nothing under cloud/ is ever linked into iotagent.
package cloud

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/console"
	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/rules"
	"github.com/iotagent/iotagent/cloud/s3"
	"github.com/iotagent/iotagent/cloud/shadow"
	"github.com/iotagent/iotagent/cloud/store"
	"github.com/iotagent/iotagent/internal/atomicfile"
)

// Defaults for Options.
const (
	DefaultMQTTAddr = "127.0.0.1:8883"
	DefaultHTTPAddr = "127.0.0.1:8080"
	DefaultRegion   = "us-east-1"
	DefaultAccount  = "123456789012"
	// ProvisioningTemplate is the name of the default fleet-provisioning
	// template in endpoint.json.
	ProvisioningTemplate = "iotsim-fleet"
)

// Options configure a Sim. Zero values take the defaults.
type Options struct {
	DataDir        string   // required: state, CA and endpoint.json live here
	MQTTAddr       string   // main MQTT listener; "127.0.0.1:0" picks a free port
	ExtraMQTTAddrs []string // more MQTT listeners, e.g. "127.0.0.1:443" for ALPN x-amzn-mqtt-ca clients
	HTTPAddr       string   // REST control and data plane
	Region         string
	Account        string
	Logger         *slog.Logger
	Now            func() time.Time
	// BeforeListen, if set, runs once every service is wired and before
	// any listener accepts a connection: the place to register broker
	// handlers that must not miss a device's first message (tests that
	// restart iotsim under a connected device).
	BeforeListen func(*Sim)
	// MQTTConnectInterval is the least time between two accepted CONNECTs
	// with one client id (broker.Options.ConnectInterval): 0 means AWS's
	// one second, negative means no limit.
	MQTTConnectInterval time.Duration
	// WrapHTTP, if set, wraps the handler of the HTTP listener (REST API
	// and S3 objects): tests observe or disturb requests there, e.g. see
	// the Range header of an artifact download or cut it off mid-way.
	WrapHTTP func(http.Handler) http.Handler
	// NoAuth turns off SigV4 authentication of the REST API and the S3
	// store (iotsim serve --auth none). Refused unless HTTPAddr is a
	// loopback address; Start logs NoAuthWarning.
	NoAuth bool
	// MaxObjectBytes bounds an S3 object; zero means
	// s3.DefaultMaxObjectBytes.
	MaxObjectBytes int64
	// RulesHTTPRemote lets the http action of topic rules post to hosts
	// that are not loopback (iotsim serve --rules-http-remote).
	RulesHTTPRemote bool
	// RulesQueueSize bounds the messages waiting for the rules engine's
	// workers; zero means rules.DefaultQueueSize.
	RulesQueueSize int
	// Faults are injected from the start (iotsim serve --faults FILE,
	// see broker.ParseFaults); more come and go through the REST API.
	Faults []broker.Fault
	// ConsoleAddr is the web console's listener; "" means "127.0.0.1:0"
	// (a free loopback port). An address other hosts can reach is used
	// as given, with a warning: the console's token then crosses the
	// network in clear text.
	ConsoleAddr string
	// NoConsole turns the web console off.
	NoConsole bool
}

// Endpoint is the content of DATA_DIR/endpoint.json: the contract that
// tests, demos and the agent's setup read. Paths are absolute.
type Endpoint struct {
	MQTTEndpoint         string `json:"mqtt_endpoint"`
	HTTPEndpoint         string `json:"http_endpoint"`
	RootCA               string `json:"root_ca"`
	ClaimCert            string `json:"claim_cert"`
	ClaimKey             string `json:"claim_key"`
	ProvisioningTemplate string `json:"provisioning_template"`
	// The access key pair that signs REST and S3 requests (SigV4), and
	// the region of their credential scope.
	AWSAccessKeyID     string `json:"aws_access_key_id"`
	AWSSecretAccessKey string `json:"aws_secret_access_key"`
	Region             string `json:"region"`
	// ConsoleURL opens the web console: it carries the console's token,
	// so endpoint.json stays readable by its owner only. Empty when the
	// console is off.
	ConsoleURL string `json:"console_url,omitempty"`
}

// Sim is a running simulator.
type Sim struct {
	opt      Options
	db       *store.DB
	ca       *pki.CA
	reg      *registry.Registry
	shadows  *shadow.Service
	broker   *broker.Broker
	prov     *provisioning.Service
	jit      *provisioning.JIT
	http     *http.Server
	httpLn   net.Listener
	endpoint Endpoint
	creds    api.Credentials

	defender     *defender.Service
	stopDefender context.CancelFunc
	defenderDone chan struct{}

	rules     *rules.Engine
	stopRules context.CancelFunc
	rulesDone chan struct{}

	jobs     *jobs.Service
	objects  *s3.Store
	stopJobs context.CancelFunc
	jobsDone chan struct{}

	presence     *console.Presence
	stopPresence func()
	console      *console.Console
	consoleSrv   *http.Server
	consoleLn    net.Listener
	consoleDone  chan struct{}

	closeOnce sync.Once
	closeErr  error
	httpDone  chan struct{}
}

// Start opens (or creates) the data dir, starts every listener and writes
// endpoint.json once all of them accept connections.
func Start(o Options) (_ *Sim, err error) {
	if o.DataDir == "" {
		return nil, errors.New("iotsim: a data dir is required")
	}
	if o.MQTTAddr == "" {
		o.MQTTAddr = DefaultMQTTAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.Region == "" {
		o.Region = DefaultRegion
	}
	if o.Account == "" {
		o.Account = DefaultAccount
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NoAuth && !isLoopback(o.HTTPAddr) {
		return nil, fmt.Errorf("iotsim: --http-addr %s: %w", o.HTTPAddr, ErrNoAuthNotLoopback)
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, err
	}
	o.DataDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Sim{opt: o, httpDone: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.db, err = store.Open(filepath.Join(dir, "iotsim.db"), time.Second); err != nil {
		return nil, err
	}
	if s.creds, err = loadOrCreateCredentials(dir); err != nil {
		return nil, err
	}
	if o.NoAuth {
		o.Logger.Warn(NoAuthWarning, "http_addr", o.HTTPAddr)
	}
	if s.ca, err = pki.LoadOrCreateCA(filepath.Join(dir, "ca")); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	serverCerts, err := s.ca.ServerCertificates(filepath.Join(dir, "ca"), []string{"127.0.0.1", "::1", "localhost"})
	if err != nil {
		return nil, fmt.Errorf("server certificates: %w", err)
	}
	s.reg = registry.New(s.db, o.Region, o.Account, o.Now)
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	s.broker, err = broker.New(broker.Options{
		// IoT policies decide everything: the claim certificate's
		// provisioning-only policy and the things' device policy are
		// attached by setupProvisioning and CreateThing.
		Authorizer:   &broker.PolicyAuthorizer{Registry: s.reg},
		Addrs:        append([]string{o.MQTTAddr}, o.ExtraMQTTAddrs...),
		Certificates: serverCerts,
		ClientCAs:    pool,
		Registry:     s.reg,
		Logger:       o.Logger.With("component", "broker"),
		Now:          o.Now,
		// AWS's one CONNECT per second per client id, unless asked otherwise.
		ConnectInterval: o.MQTTConnectInterval,
		// JITR/JITP (cloud/provisioning/jitp.go); s.jit is set before Start.
		AutoRegister: func(c *x509.Certificate) { s.jit.AutoRegister(c) },
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := s.startRules(); err != nil {
		return nil, err
	}
	publish := func(topic string, payload []byte) {
		if err := s.servicePublish(topic, payload); err != nil {
			o.Logger.Warn("publish", "topic", topic, "err", err)
		}
	}
	s.shadows = shadow.New(s.db, publish, o.Now)
	s.broker.Handle("$aws/things/+/shadow/#", func(_ *broker.Principal, topic string, payload []byte) {
		s.shadows.HandleRequest(topic, payload)
	})
	if err := s.startDefender(publish); err != nil {
		return nil, err
	}
	s.prov = provisioning.New(s.reg, provisioning.PKIIssuer{CA: s.ca},
		func(clientID, topic string, payload []byte) error {
			return s.broker.PublishTo(clientID, topic, payload, 1)
		}, o.Now, provisioning.Options{
			Policies: provisioning.RegistryPolicies(s.reg),
			Logger:   o.Logger.With("component", "provisioning"),
		})
	for _, f := range []string{provisioning.CertificatesFilter, provisioning.TemplatesFilter} {
		s.broker.Handle(f, func(p *broker.Principal, topic string, payload []byte) {
			s.prov.HandleRequest(p, topic, payload)
		})
	}
	s.jit = provisioning.NewJIT(s.prov, s.reg, func(topic string, payload []byte) error {
		return s.broker.Publish(topic, payload, 1)
	}, o.Now)
	for i, f := range o.Faults {
		if _, err := s.broker.AddFault(f); err != nil {
			return nil, fmt.Errorf("faults[%d]: %w", i, err)
		}
	}
	// The fleet's connection state misses no lifecycle event.
	s.presence = console.NewPresence(o.Logger.With("component", "console"))
	if s.stopPresence, err = s.presence.Watch(s.broker); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if o.BeforeListen != nil {
		o.BeforeListen(s)
	}
	if err := s.broker.Start(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	if s.httpLn, err = net.Listen("tcp", o.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	if err := s.startJobs(); err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler: api.New(api.Options{
			Shadows:   s.shadows,
			Registry:  s.reg,
			Issuer:    s.ca,
			Templates: s.reg,
			Defender:  s.defender,
			Jobs:      s.jobs,
			Faults:    s.broker,
			Observer:  s.broker,
			Publish: func(topic string, payload []byte, qos byte, _ bool) error {
				// iot-data Publish: rules see it as AWS's do; a Basic
				// Ingest topic goes to its rule only.
				if s.rules.HandleMessage(rules.Source{Principal: s.creds.AccessKeyID}, topic, payload) {
					return nil
				}
				return s.broker.Publish(topic, payload, qos)
			},
			Rules:       s.rules,
			Endpoint:    "localhost",
			Logger:      o.Logger.With("component", "api"),
			Now:         o.Now,
			Credentials: &s.creds,
			NoAuth:      o.NoAuth,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// S3 (OTA files) shares the REST listener: /s3/... and s3-signed requests.
	s.http.Handler = s.objects.Mount(s.http.Handler)
	if o.WrapHTTP != nil {
		s.http.Handler = o.WrapHTTP(s.http.Handler)
	}
	go func() {
		defer close(s.httpDone)
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("http server", "err", err)
		}
	}()

	consoleURL, err := s.startConsole()
	if err != nil {
		return nil, err
	}
	if err := s.writeEndpoint(consoleURL); err != nil {
		return nil, err
	}
	o.Logger.Info("iotsim ready", "mqtt", s.broker.Addrs(), "http", s.endpoint.HTTPEndpoint, "data_dir", dir)
	if consoleURL != "" {
		o.Logger.Info("web console: open the console_url of endpoint.json (it carries the login token)",
			"console", "http://"+s.consoleAddr(), "endpoint_json", filepath.Join(dir, "endpoint.json"))
	}
	return s, nil
}

// writeEndpoint creates the claim identity on first start and writes
// endpoint.json atomically.
func (s *Sim) writeEndpoint(consoleURL string) error {
	dir := s.opt.DataDir
	rootCA := filepath.Join(dir, "ca", "ca.pem")
	claimCert := filepath.Join(dir, "claim", "claim.crt")
	claimKey := filepath.Join(dir, "claim", "claim.key")
	if _, err := os.Stat(claimCert); errors.Is(err, os.ErrNotExist) {
		// The claim certificate is registered but attached to no thing;
		// setupProvisioning gives it its provisioning-only rights.
		certPEM, keyPEM, err := s.ca.NewKeysAndCertificate("iotsim claim")
		if err != nil {
			return fmt.Errorf("claim certificate: %w", err)
		}
		if _, err := s.reg.RegisterCertificate(certPEM, registry.StatusActive); err != nil && !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("register claim certificate: %w", err)
		}
		if err := WriteCredentials(filepath.Join(dir, "claim"), "claim", certPEM, keyPEM, s.ca.CertPEM); err != nil {
			return err
		}
	}
	if err := s.setupProvisioning(claimCert); err != nil {
		return err
	}
	s.endpoint = Endpoint{
		MQTTEndpoint:         s.broker.Addrs()[0],
		HTTPEndpoint:         "http://" + s.httpLn.Addr().String(),
		RootCA:               rootCA,
		ClaimCert:            claimCert,
		ClaimKey:             claimKey,
		ProvisioningTemplate: ProvisioningTemplate,
		AWSAccessKeyID:       s.creds.AccessKeyID,
		AWSSecretAccessKey:   s.creds.SecretAccessKey,
		Region:               s.opt.Region,
		ConsoleURL:           consoleURL,
	}
	b, err := json.MarshalIndent(s.endpoint, "", "  ")
	if err != nil {
		return err
	}
	// It holds the secret key: readable by its owner only.
	return atomicfile.WriteFile(filepath.Join(dir, "endpoint.json"), append(b, '\n'), 0o600)
}

// setupProvisioning creates, if missing, the default template, the device
// policy and the claim certificate's provisioning-only policy.
func (s *Sim) setupProvisioning(claimCertPath string) error {
	b, err := os.ReadFile(claimCertPath)
	if err != nil {
		return fmt.Errorf("claim certificate: %w", err)
	}
	cert, err := pki.ParseCertificatePEM(b)
	if err != nil {
		return fmt.Errorf("claim certificate: %w", err)
	}
	claim, err := s.reg.DescribeCertificate(pki.CertificateID(cert.Raw))
	if err != nil {
		return fmt.Errorf("claim certificate: %w", err)
	}
	if err := provisioning.Setup(s.reg, provisioning.RegistryPolicies(s.reg), ProvisioningTemplate, claim.ARN); err != nil {
		return fmt.Errorf("fleet provisioning: %w", err)
	}
	// A data dir made by an older iotsim keeps its defaults: say what
	// protection they lack.
	if tpl, err := s.reg.DescribeProvisioningTemplate(ProvisioningTemplate); err == nil &&
		(tpl.Hook == nil || !provisioning.IsTakeoverGuard(tpl.Hook.TargetARN)) {
		s.opt.Logger.Warn("the default provisioning template has no takeover check (made by an older iotsim, or changed): "+
			"RegisterThing may attach a certificate to a thing that has another ACTIVE one; start from a new data dir to get it",
			"template", ProvisioningTemplate)
	}
	if p, err := s.reg.GetPolicy(provisioning.ClaimPolicyName); err == nil && p.Document != provisioning.ClaimPolicyDocument(ProvisioningTemplate) {
		s.opt.Logger.Warn("the claim policy is not iotsim's current default (made by an older iotsim, or changed): "+
			"check that it allows only the client ids "+provisioning.ClaimClientIDPrefix+"*", "policy", provisioning.ClaimPolicyName)
	}
	return nil
}

// Credentials are the access key pair that signs REST and S3 requests.
func (s *Sim) Credentials() api.Credentials { return s.creds }

// Client is a REST API client of this iotsim, signing with its credentials.
func (s *Sim) Client() *api.Client { return s.endpoint.Client() }

// Provisioning is the fleet provisioning service.
func (s *Sim) Provisioning() *provisioning.Service { return s.prov }

// Endpoint is what endpoint.json says.
func (s *Sim) Endpoint() Endpoint { return s.endpoint }

// MQTTAddrs are the addresses of every MQTT listener, main one first.
func (s *Sim) MQTTAddrs() []string { return s.broker.Addrs() }

// Shadows is the shadow service, for tests to inspect and drive.
func (s *Sim) Shadows() *shadow.Service { return s.shadows }

// Registry is the thing and certificate registry.
func (s *Sim) Registry() *registry.Registry { return s.reg }

// Broker is the MQTT broker.
func (s *Sim) Broker() *broker.Broker { return s.broker }

// Defender is the Device Defender service.
func (s *Sim) Defender() *defender.Service { return s.defender }

// startDefender creates the Device Defender service, plugs it into the
// broker and starts its cloud-side metrics ticker (stopped by Close).
func (s *Sim) startDefender(publish func(topic string, payload []byte)) error {
	var err error
	s.defender, err = defender.New(defender.Options{
		DB:            s.db,
		Registry:      s.reg,
		Publish:       publish,
		Metrics:       s.broker.AllClientMetrics,
		ThingGroupsOf: s.reg.ThingGroupsOf,
		Policies: func() ([]defender.Policy, error) {
			ps, err := s.reg.ListPolicies()
			out := make([]defender.Policy, 0, len(ps))
			for _, p := range ps {
				out = append(out, defender.Policy{Name: p.Name, Document: p.Document})
			}
			return out, err
		},
		Now:    s.opt.Now,
		Logger: s.opt.Logger.With("component", "defender"),
	})
	if err != nil {
		return fmt.Errorf("defender: %w", err)
	}
	s.broker.Handle("$aws/things/+/defender/metrics/+", s.defender.HandleReport)
	s.broker.Handle("#", s.defender.HandleMessage)
	s.broker.Handle("$aws/#", s.defender.HandleMessage)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopDefender, s.defenderDone = cancel, make(chan struct{})
	go func() {
		defer close(s.defenderDone)
		_ = s.defender.Run(ctx)
	}()
	return nil
}

// CA is iotsim's certificate authority.
func (s *Sim) CA() *pki.CA { return s.ca }

// Close stops every listener and closes the database. It is idempotent.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.console != nil {
			s.console.Close() // ends the live streams, which Shutdown would wait for
		}
		if s.consoleSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, s.consoleSrv.Shutdown(ctx))
			cancel()
			<-s.consoleDone
		}
		if s.stopPresence != nil {
			s.stopPresence()
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, s.http.Shutdown(ctx))
			cancel()
			<-s.httpDone
		} else if s.httpLn != nil {
			errs = append(errs, s.httpLn.Close())
		}
		if s.stopJobs != nil {
			s.stopJobs()
			<-s.jobsDone
		}
		if s.stopDefender != nil {
			s.stopDefender()
			<-s.defenderDone
		}
		if s.stopRules != nil {
			s.stopRules()
			<-s.rulesDone
		}
		if s.broker != nil {
			errs = append(errs, s.broker.Close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// CreateThing registers a thing with a new certificate and key signed by
// iotsim's CA (ACTIVE, attached to the thing) and returns them.
func (s *Sim) CreateThing(name string) (certPEM, keyPEM []byte, err error) {
	return CreateThing(s.reg, s.ca, name)
}

// CreateThing does what `iotsim thing create` does against a registry
// and CA opened directly.
func CreateThing(reg *registry.Registry, ca *pki.CA, name string) (certPEM, keyPEM []byte, err error) {
	if _, err := reg.CreateThing(name, "", nil); err != nil {
		return nil, nil, fmt.Errorf("create thing %s: %w", name, err)
	}
	certPEM, keyPEM, err = ca.NewKeysAndCertificate(name)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: %w", name, err)
	}
	c, err := reg.RegisterCertificate(certPEM, registry.StatusActive)
	if err != nil {
		return nil, nil, fmt.Errorf("register certificate for %s: %w", name, err)
	}
	if err := reg.AttachThingPrincipal(name, c.ID); err != nil {
		return nil, nil, fmt.Errorf("attach certificate to %s: %w", name, err)
	}
	// The device policy lets the thing use its own topics. A data dir that
	// no iotsim has served yet does not have it.
	if _, err := reg.CreatePolicy(provisioning.DevicePolicyName, provisioning.DevicePolicyDocument); err != nil && !errors.Is(err, registry.ErrExists) {
		return nil, nil, fmt.Errorf("device policy: %w", err)
	}
	if err := reg.AttachPolicy(provisioning.DevicePolicyName, c.ARN); err != nil {
		return nil, nil, fmt.Errorf("attach policy %s to the certificate of %s: %w", provisioning.DevicePolicyName, name, err)
	}
	return certPEM, keyPEM, nil
}

// WriteCredentials writes base.crt, base.key (0600) and root-ca.pem into
// dir (0700), each atomically: the layout the agent's file key store
// accepts.
func WriteCredentials(dir, base string, certPEM, keyPEM, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if blk, _ := pem.Decode(keyPEM); blk == nil {
		return errors.New("write credentials: key is not PEM")
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{base + ".crt", certPEM, 0o644},
		{base + ".key", keyPEM, 0o600},
		{"root-ca.pem", caPEM, 0o644},
	} {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// ReadEndpoint reads DATA_DIR/endpoint.json.
func ReadEndpoint(dataDir string) (Endpoint, error) {
	var e Endpoint
	b, err := os.ReadFile(filepath.Join(dataDir, "endpoint.json"))
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("endpoint.json: %w", err)
	}
	return e, nil
}

// Jobs is the Jobs service.
func (s *Sim) Jobs() *jobs.Service { return s.jobs }

// Objects is the S3-style object store (OTA files), served under
// HTTPEndpoint + "/s3": give the aws CLI --endpoint-url http://HOST:PORT/s3
// (or the bare http_endpoint: requests signed for s3 are routed to it too).
func (s *Sim) Objects() *s3.Store { return s.objects }

// startJobs creates the object store and the Jobs service (it needs the
// HTTP listener's address for presigned URLs), plugs the service into the
// broker and starts its timer loop (stopped by Close).
func (s *Sim) startJobs() error {
	var err error
	s.objects, err = s3.New(s3.Options{
		DB:      s.db,
		Dir:     filepath.Join(s.opt.DataDir, "s3"),
		BaseURL: "http://" + s.httpLn.Addr().String() + "/s3",
		Region:  s.opt.Region,
		Now:     s.opt.Now,

		Credentials:    &s.creds,
		NoAuth:         s.opt.NoAuth,
		MaxObjectBytes: s.opt.MaxObjectBytes,
	})
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	s.jobs, err = jobs.New(jobs.Options{
		DB:       s.db,
		Registry: s.reg,
		Files:    s.objects,
		Publish:  s.servicePublish,
		PublishTo: func(clientID, topic string, payload []byte) error {
			return s.broker.PublishTo(clientID, topic, payload, 1)
		},
		Now:    s.opt.Now,
		Logger: s.opt.Logger.With("component", "jobs"),
	})
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	s.broker.Handle(jobs.Filter, s.jobs.HandleRequest)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopJobs, s.jobsDone = cancel, make(chan struct{})
	go func() {
		defer close(s.jobsDone)
		_ = s.jobs.Run(ctx)
	}()
	return nil
}

// Rules is the rules engine.
func (s *Sim) Rules() *rules.Engine { return s.rules }

// startRules creates the rules engine, gives it every device publish
// and starts its workers (stopped by Close).
func (s *Sim) startRules() error {
	var err error
	s.rules, err = rules.New(rules.Options{
		DB:      s.db,
		Region:  s.opt.Region,
		Account: s.opt.Account,
		Publish: s.broker.Publish,
		PutObject: func(bucket, key string, body []byte) error {
			if s.objects == nil {
				return errors.New("the object store is not running")
			}
			// AWS's S3 action writes into an existing bucket only.
			if !s.objects.HasBucket(bucket) {
				return fmt.Errorf("NoSuchBucket: the bucket %s does not exist in iotsim's object store", bucket)
			}
			_, err := s.objects.Put(bucket, key, "application/json", bytes.NewReader(body))
			return err
		},
		AllowRemoteHTTP: s.opt.RulesHTTPRemote,
		QueueSize:       s.opt.RulesQueueSize,
		Logger:          s.opt.Logger.With("component", "rules"),
		Now:             s.opt.Now,
	})
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	toRules := func(p *broker.Principal, topic string, payload []byte) {
		s.rules.HandleMessage(rules.Source{ClientID: p.ClientID, Principal: p.CertificateID}, topic, payload)
	}
	s.broker.Handle("#", toRules)
	s.broker.Handle("$aws/#", toRules)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopRules, s.rulesDone = cancel, make(chan struct{})
	go func() {
		defer close(s.rulesDone)
		_ = s.rules.Run(ctx)
	}()
	return nil
}

// servicePublish publishes a message of iotsim's own services (shadow,
// jobs, defender replies) and lets the rules see it, as AWS's rules see
// the shadow's $aws/things/+/shadow/... topics.
func (s *Sim) servicePublish(topic string, payload []byte) error {
	if err := s.broker.Publish(topic, payload, 1); err != nil {
		return err
	}
	s.rules.HandleMessage(rules.Source{}, topic, payload)
	return nil
}

// Console is the web console, nil when it is off.
func (s *Sim) Console() *console.Console { return s.console }

func (s *Sim) consoleAddr() string { return s.consoleLn.Addr().String() }

// startConsole serves the web console on its own listener (loopback
// unless configured otherwise) and returns its login URL, "" when off.
func (s *Sim) startConsole() (string, error) {
	if s.opt.NoConsole {
		return "", nil
	}
	addr := s.opt.ConsoleAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	token, err := console.LoadOrCreateToken(s.opt.DataDir)
	if err != nil {
		return "", err
	}
	s.console, err = console.New(console.Options{
		Token: token, Broker: s.broker, Registry: s.reg, Shadows: s.shadows, Jobs: s.jobs,
		Defender: s.defender, Rules: s.rules, Presence: s.presence,
		Logger: s.opt.Logger.With("component", "console"), Now: s.opt.Now,
	})
	if err != nil {
		return "", err
	}
	if s.consoleLn, err = net.Listen("tcp", addr); err != nil {
		return "", fmt.Errorf("console listener: %w", err)
	}
	if !isLoopback(addr) {
		s.opt.Logger.Warn("the web console listens beyond loopback over plain HTTP: its token and every page cross the network in clear text",
			"console_addr", addr)
	}
	s.consoleSrv = &http.Server{Handler: s.console, ReadHeaderTimeout: 10 * time.Second}
	s.consoleDone = make(chan struct{})
	go func() {
		defer close(s.consoleDone)
		if err := s.consoleSrv.Serve(s.consoleLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opt.Logger.Error("console server", "err", err)
		}
	}()
	return console.URL(s.consoleAddr(), token), nil
}
