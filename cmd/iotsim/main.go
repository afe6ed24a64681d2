// Command iotsim is a local, faithful stand-in for AWS IoT Core: MQTT over
// mutual TLS, the thing registry, Device Shadow and a REST API that the
// aws CLI drives with --endpoint-url. See `iotsim help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/s3"
	"github.com/iotagent/iotagent/cloud/shadow"
	"github.com/iotagent/iotagent/cloud/store"
	"github.com/iotagent/iotagent/internal/version"
)

const usage = `iotsim: a local AWS IoT Core for development, tests and demos.

Usage:
  iotsim serve [flags]                          run the simulator
        [--pprof-addr HOST:PORT]                (net/http/pprof profiles, for profiling)
        [--faults FILE]                         (faults to inject from the start, see fault)
        [--console-addr HOST:PORT|off]          (web console, default a free loopback port; its URL
                                                 with the login token is endpoint.json's console_url)
  iotsim thing create NAME --cert-out DIR       register a thing with a new certificate and key
  iotsim claim create NAME --cert-out DIR       mint a claim certificate for fleet provisioning
        [--template T]                          (provisioning-only policy for template T)
  iotsim shadow get THING [--name S]            print a shadow document
  iotsim shadow update THING [--name S] DOC     update a shadow (DOC is JSON, or @file)
  iotsim fault add --kind KIND [flags]          inject a protocol fault into the running simulator
  iotsim fault list                             print the faults and the latest injections (JSON)
  iotsim fault clear [ID]                       remove one fault, or all
  iotsim qualify --thing NAME [--json]          run the device-qualification suite against a
                                                connected device (exit 1 when a case fails)
  iotsim env                                    print shell exports for the aws CLI:
                                                eval "$(iotsim env)"; aws iot list-things
  iotsim console                                print the web console's login URL (it carries the token)
  iotsim version                                print the version

Every command takes --data-dir DIR (default ./iotsim-data). The admin
commands work on the data dir directly, or, while "iotsim serve" holds it,
through the running simulator's REST API (so devices see the change).

Run "iotsim COMMAND -h" for a command's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "iotsim:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is the exit status for run's error: 1 when qualify ran and a
// case failed, 2 for every other error (usage, setup, I/O).
func exitCode(err error) int {
	if errors.Is(err, errQualifyFailed) {
		return 1
	}
	return 2
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(rest, stderr)
	case "thing":
		if len(rest) == 0 || rest[0] != "create" {
			return errors.New(`usage: iotsim thing create NAME --cert-out DIR`)
		}
		return thingCreate(rest[1:], stdout, stderr)
	case "claim":
		if len(rest) == 0 || rest[0] != "create" {
			return errors.New(`usage: iotsim claim create NAME --cert-out DIR [--template T] [--force]`)
		}
		return claimCreate(rest[1:], stdout, stderr)
	case "shadow":
		if len(rest) == 0 || (rest[0] != "get" && rest[0] != "update") {
			return errors.New(`usage: iotsim shadow get|update THING [--name S] [DOC]`)
		}
		return shadowCmd(rest[0], rest[1:], stdout, stderr)
	case "fault":
		return faultCmd(rest, stdout, stderr)
	case "qualify":
		return qualifyCmd(rest, stdout, stderr)
	case "env":
		return envCmd(rest, stdout, stderr)
	case "console":
		return consoleCmd(rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "iotsim", version.String())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", "iotsim-data", "simulator state: database, CA, endpoint.json")
	return fs, dataDir
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func serve(args []string, stderr io.Writer) error {
	fs, dataDir := newFlags("serve", "iotsim serve [flags]", stderr)
	mqttAddr := fs.String("mqtt-addr", cloud.DefaultMQTTAddr, "MQTT over mutual TLS listener (host:port; port 0 picks a free one)")
	var extra listFlag
	fs.Var(&extra, "mqtt-extra-addr", "another MQTT listener, e.g. 127.0.0.1:443 for AWS's port-443 ALPN mode (repeatable)")
	httpAddr := fs.String("http-addr", cloud.DefaultHTTPAddr, "REST control and data plane listener (plain HTTP)")
	region := fs.String("region", cloud.DefaultRegion, "region in ARNs")
	account := fs.String("account", cloud.DefaultAccount, "12-digit account id in ARNs")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	auth := fs.String("auth", "sigv4", "REST and S3 authentication: sigv4 (requests signed with endpoint.json's credentials) or none (only on a loopback --http-addr)")
	maxObject := fs.Int64("max-object-bytes", s3.DefaultMaxObjectBytes, "largest S3 object (OTA artifact) accepted; larger uploads get EntityTooLarge")
	rulesRemote := fs.Bool("rules-http-remote", false, "let the http action of topic rules post to hosts that are not loopback (off: a rule cannot send device data off this machine)")
	faultsFile := fs.String("faults", "", `inject the faults in this JSON file ({"faults": [...]}, see "iotsim fault") from the start`)
	consoleAddr := fs.String("console-addr", "127.0.0.1:0", "web console listener (host:port; the default picks a free loopback port; off turns the console off); its login link, with the token, is endpoint.json's console_url")
	pprofAddr := fs.String("pprof-addr", "", "serve Go's net/http/pprof profiles on this address (host:port), for profiling iotsim under load; off when empty")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", pos)
	}
	if *auth != "sigv4" && *auth != "none" {
		return fmt.Errorf("--auth %q: want sigv4 or none", *auth)
	}
	if *maxObject <= 0 {
		return fmt.Errorf("--max-object-bytes %d: want a positive size", *maxObject)
	}
	var faults []broker.Fault
	if *faultsFile != "" {
		var err error
		if faults, err = readFaults(*faultsFile); err != nil {
			return err
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofAddr != "" {
		stopPprof, err := servePprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	sim, err := cloud.Start(cloud.Options{
		DataDir: *dataDir, MQTTAddr: *mqttAddr, ExtraMQTTAddrs: extra, HTTPAddr: *httpAddr,
		Region: *region, Account: *account, Logger: log,
		NoAuth: *auth == "none", MaxObjectBytes: *maxObject, RulesHTTPRemote: *rulesRemote, Faults: faults,
		ConsoleAddr: *consoleAddr, NoConsole: *consoleAddr == "off",
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("iotsim stopping")
	return sim.Close()
}

// local opens the data dir directly; ok is false when a running iotsim
// holds it, and the command must go through its REST API instead.
func local(dataDir string) (db *store.DB, ok bool, err error) {
	db, err = store.Open(dataDir+"/iotsim.db", 200*time.Millisecond)
	if errors.Is(err, store.ErrLocked) {
		return nil, false, nil
	}
	if err == nil {
		return db, true, nil
	}
	if _, serr := os.Stat(dataDir); errors.Is(serr, os.ErrNotExist) {
		return nil, false, fmt.Errorf("data dir %s does not exist: run `iotsim serve --data-dir %s` once first", dataDir, dataDir)
	}
	return nil, false, err
}

func remote(dataDir string) (*api.Client, cloud.Endpoint, error) {
	ep, err := cloud.ReadEndpoint(dataDir)
	if err != nil {
		return nil, ep, fmt.Errorf("the data dir is in use but its endpoint.json cannot be read: %w", err)
	}
	if ep.AWSAccessKeyID == "" {
		return nil, ep, fmt.Errorf("%s/endpoint.json has no aws_access_key_id: it was written by an older iotsim; restart iotsim serve", dataDir)
	}
	return ep.Client(), ep, nil
}

// envCmd prints the exports that point the aws CLI at the simulator.
func envCmd(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("env", "iotsim env [--data-dir D]", stderr)
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("env takes no arguments, got %q", pos)
	}
	ep, err := cloud.ReadEndpoint(*dataDir)
	if err != nil {
		return fmt.Errorf("%w (start `iotsim serve --data-dir %s` first)", err, *dataDir)
	}
	if ep.AWSAccessKeyID == "" {
		return fmt.Errorf("%s/endpoint.json has no aws_access_key_id: it was written by an older iotsim; restart iotsim serve", *dataDir)
	}
	for _, kv := range ep.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(stdout, "export %s=%s\n", k, shellQuote(v))
	}
	return nil
}

// consoleCmd prints the running simulator's console_url.
func consoleCmd(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("console", "iotsim console [--data-dir D]", stderr)
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("console takes no arguments, got %q", pos)
	}
	ep, err := cloud.ReadEndpoint(*dataDir)
	if err != nil {
		return fmt.Errorf("%w (start `iotsim serve --data-dir %s` first)", err, *dataDir)
	}
	if ep.ConsoleURL == "" {
		return fmt.Errorf("%s/endpoint.json has no console_url: iotsim serve runs with --console-addr off, or is older than the console", *dataDir)
	}
	fmt.Fprintln(stdout, ep.ConsoleURL)
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=:._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func thingCreate(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("thing create", "iotsim thing create NAME --cert-out DIR", stderr)
	certOut := fs.String("cert-out", "", "directory to write NAME.crt, NAME.key (0600) and root-ca.pem into (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *certOut == "" {
		fs.Usage()
		return errors.New("thing create needs exactly one NAME and --cert-out DIR")
	}
	name := pos[0]
	var certPEM, keyPEM, caPEM []byte
	db, ok, err := local(*dataDir)
	if err != nil {
		return err
	}
	if ok {
		defer db.Close()
		ca, err := pki.LoadOrCreateCA(*dataDir + "/ca")
		if err != nil {
			return err
		}
		reg := registry.New(db, cloud.DefaultRegion, cloud.DefaultAccount, time.Now)
		if certPEM, keyPEM, err = cloud.CreateThing(reg, ca, name); err != nil {
			return err
		}
		caPEM = ca.CertPEM
	} else {
		c, ep, err := remote(*dataDir)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.CreateThing(ctx, name); err != nil {
			return err
		}
		_, arn, cp, kp, err := c.CreateKeysAndCertificate(ctx, true)
		if err != nil {
			return err
		}
		if err := c.AttachThingPrincipal(ctx, name, arn); err != nil {
			return err
		}
		if err := c.AttachPolicy(ctx, provisioning.DevicePolicyName, arn); err != nil {
			return err
		}
		certPEM, keyPEM = []byte(cp), []byte(kp)
		if caPEM, err = os.ReadFile(ep.RootCA); err != nil {
			return err
		}
	}
	if err := cloud.WriteCredentials(*certOut, name, certPEM, keyPEM, caPEM); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "thing %s created; certificate, key and root CA in %s\n", name, *certOut)
	return nil
}

func shadowCmd(op string, args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("shadow "+op, "iotsim shadow "+op+" THING [--name S]"+map[string]string{"get": "", "update": " DOC"}[op], stderr)
	name := fs.String("name", "", "named shadow (default: the classic shadow)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"get": 1, "update": 2}[op]
	if len(pos) != want {
		fs.Usage()
		return fmt.Errorf("shadow %s takes %d argument(s)", op, want)
	}
	thing := pos[0]
	var doc []byte
	if op == "update" {
		if doc, err = readDoc(pos[1]); err != nil {
			return err
		}
	}
	db, ok, err := local(*dataDir)
	if err != nil {
		return err
	}
	var out []byte
	if ok {
		defer db.Close()
		svc := shadow.New(db, func(string, []byte) {}, time.Now)
		if op == "get" {
			out, err = svc.Get(thing, *name, nil)
		} else {
			out, err = svc.Update(thing, *name, doc)
		}
	} else {
		c, _, rerr := remote(*dataDir)
		if rerr != nil {
			return rerr
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if op == "get" {
			out, err = c.GetThingShadow(ctx, thing, *name)
		} else {
			out, err = c.UpdateThingShadow(ctx, thing, *name, doc)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(out))
	return nil
}

func readDoc(arg string) ([]byte, error) {
	if strings.HasPrefix(arg, "@") {
		return os.ReadFile(arg[1:])
	}
	return []byte(arg), nil
}
