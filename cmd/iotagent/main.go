// Command iotagent is the device agent: it connects a Raspberry Pi (or any
// embedded Linux) to AWS IoT Core over mutual TLS, keeps its shadow in
// sync and reports its sensors. See `iotagent help`.
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
	"path/filepath"
	"syscall"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/firstboot"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/internal/version"
)

const defaultConfig = "/etc/iotagent/config.json"

const usage = `iotagent: connects this device to AWS IoT Core (or iotsim).

Usage:
  iotagent run [flags]                 run the agent (what the systemd unit starts)
  iotagent config validate [FILE]      check a config file and list every problem
  iotagent status                      one screen about the running agent
  iotagent sensors read|watch          read the sensors (directly when the agent is not running)
  iotagent shadow get|resync           show the device shadow, or ask for a resync
  iotagent jobs list                   the agent's jobs (when its build has a jobs service)
  iotagent ota status|commit|rollback  OTA slots and versions; commit the version on trial or roll back
  iotagent ota keygen|sign|release     signing keys, signatures and the ota job document (release side)
  iotagent ota init|prestart           the OTA steps the systemd unit runs before the agent starts
  iotagent logs [-n N]                 the newest log lines the agent keeps in memory
  iotagent log-level LEVEL             set the agent's log level until it restarts
  iotagent diag                        check config, key, certificate, clock, network, TLS, MQTT, hardware
  iotagent outbox list|retry|purge     the queue of unsent messages and its quarantine
  iotagent provision [flags]           fleet provisioning once, for the manufacturing line (JSON result)
  iotagent firstboot [flags]           adopt a config dropped on the boot partition (run as root before the agent)
  iotagent cert rotate                 new key and certificate now (also automatic near expiry)
  iotagent defender report [--dry-run] send a Device Defender report now, or print the one that would be sent
  iotagent completion bash|zsh|fish    print a shell completion script
  iotagent version                     print version, commit and platform

Every command takes -h (its flags) and --json; the ones that talk to the
agent take --socket and --timeout. Exit codes: 0 ok, 1 failed (diag: a
check FAILed), 2 usage, 3 agent not running or not answering, 4 not
provided by the running agent.

The configuration reference is configs/README.md in the source tree.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee *exitError
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "iotagent:", err)
		}
		os.Exit(exitCode(err))
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return runAgent(rest, stderr)
	case "config":
		if len(rest) == 0 || rest[0] != "validate" {
			return usagef("usage: iotagent config validate [--config] FILE")
		}
		return validate(rest[1:], stdout, stderr)
	case "status":
		return statusCmd(rest, stdout, stderr)
	case "sensors":
		return sensorsCmd(rest, stdout, stderr)
	case "shadow":
		return shadowCmd(rest, stdout, stderr)
	case "jobs":
		if len(rest) == 0 || rest[0] != "list" {
			return usagef("usage: iotagent jobs list [flags]")
		}
		return sectionCmd("jobs list", "jobs list [flags]", "The running agent's jobs, as JSON.", localapi.SectionJobs)(rest[1:], stdout, stderr)
	case "ota":
		return otaCmd(rest, stdout, stderr)
	case "logs":
		return logsCmd(rest, stdout, stderr)
	case "log-level":
		return logLevelCmd(rest, stdout, stderr)
	case "diag":
		return diagCmd(rest, stdout, stderr)
	case "outbox":
		return outboxCmd(rest, stdout, stderr)
	case "provision":
		return provisionCmd(rest, stdout, stderr)
	case "firstboot":
		return firstbootCmd(rest, stdout, stderr)
	case "cert":
		return certCmd(rest, stdout, stderr)
	case "defender":
		if len(rest) == 0 || rest[0] != "report" {
			return usagef("usage: iotagent defender report [--dry-run] [flags]")
		}
		return defenderCmd(rest[1:], stdout, stderr)
	case "completion":
		return completionCmd(rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "iotagent", version.String())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}

// overrides are the run flags that replace config file values.
type overrides struct {
	stateDir, thing, endpoint, rootCA, cert, key, logLevel *string
	port                                                   *int
}

func runFlags(fs *flag.FlagSet) overrides {
	return overrides{
		stateDir: fs.String("state-dir", "", "override state_dir"),
		thing:    fs.String("thing-name", "", "override thing_name (also the MQTT client ID)"),
		endpoint: fs.String("endpoint", "", "override mqtt.endpoint (host name, no port)"),
		port:     fs.Int("port", 0, "override mqtt.port"),
		rootCA:   fs.String("root-ca", "", "override mqtt.root_ca"),
		cert:     fs.String("cert", "", "override identity.cert"),
		key:      fs.String("key", "", "override identity.key"),
		logLevel: fs.String("log-level", "", "override log.level (debug, info, warn, error)"),
	}
}

func (o overrides) apply(c *config.Config) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	for _, p := range []*string{o.stateDir, o.rootCA, o.cert, o.key} {
		*p = absPath(*p)
	}
	set(&c.StateDir, *o.stateDir)
	set(&c.ThingName, *o.thing)
	set(&c.MQTT.Endpoint, *o.endpoint)
	set(&c.MQTT.RootCA, *o.rootCA)
	set(&c.Identity.Cert, *o.cert)
	set(&c.Identity.Key, *o.key)
	set(&c.Log.Level, *o.logLevel)
	if *o.port != 0 {
		c.MQTT.Port = *o.port
	}
}

func loadConfig(path string, ov *overrides) (config.Config, error) {
	var override func(*config.Config)
	if ov != nil {
		override = ov.apply
	}
	return loadConfigWith(path, override)
}

// loadConfigWith reads, parses and validates the config file, with
// override (the command line) applied before the derived defaults.
func loadConfigWith(path string, override func(*config.Config)) (config.Config, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return config.Config{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return config.Config{}, err
	}
	c, err := config.ParseWith(data, filepath.Dir(abs), override)
	if err != nil {
		return c, fmt.Errorf("config %s:\n%w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s:\n%w", path, err)
	}
	return c, nil
}

type runFlagSet struct {
	set     *flag.FlagSet
	cfgPath *string
	ov      overrides
}

func newRunFlags() runFlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	return runFlagSet{set: fs, cfgPath: fs.String("config", defaultConfig, "config file"), ov: runFlags(fs)}
}

func runAgent(args []string, stderr io.Writer) error {
	rf := newRunFlags()
	fs, cfgPath, ov := rf.set, rf.cfgPath, rf.ov
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: iotagent run [flags]\n\nRuns the agent until SIGINT or SIGTERM. Flags override the config file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	stateDir := *ov.stateDir
	if stateDir == "" {
		stateDir = config.DefaultStateDir
	}
	if p := firstboot.ConfigPath(stateDir); p != "" && !explicit {
		*cfgPath = p // adopted from the boot partition: it wins over the packaged default
	}
	cfg, err := loadConfig(*cfgPath, &ov)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	ring := logring.New(0)
	log := slog.New(ring.Handler(logHandler(cfg, level, stderr)))
	if agent.NeedsHost(cfg) {
		st, err := initHost()
		if err != nil {
			return fmt.Errorf("periph host init: %w", err)
		}
		for _, f := range st.Failed {
			log.Info("periph driver failed", "driver", f.D.String(), "err", f.Err)
		}
	}
	opts := agent.Options{Logger: log, Level: level, Version: version.Version}
	if p, ok := firstboot.LastProblem(cfg.StateDir); ok {
		opts.StartupProblem = fmt.Sprintf("first boot: %s (files left in %s)", p.Error, p.BootDir)
		log.Error("the configuration on the boot partition was not adopted", "boot_dir", p.BootDir, "err", p.Error)
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		return err
	}
	a.SetLogRing(ring)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		return err
	}
	log.Info("agent stopped")
	return nil
}

// logHandler is the configured log format at level, on w.
func logHandler(cfg config.Config, level slog.Leveler, w io.Writer) slog.Handler {
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.NewJSONHandler(w, hopts)
	}
	return slog.NewTextHandler(w, hopts)
}

// newLogger logs in the configured format and level to w.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.Log.Level))
	return slog.New(logHandler(cfg, l, w))
}

// absPath makes a path given on the command line absolute ("" stays "").
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func validate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig, "config file (or give it as the argument)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("usage: iotagent config validate [--config] FILE")
	}
	if fs.NArg() == 1 {
		*cfgPath = fs.Arg(0)
	}
	_, err := loadConfig(*cfgPath, nil)
	if *asJSON {
		return validateJSON(stdout, *cfgPath, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return nil
}
