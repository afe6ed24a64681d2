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
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/internal/version"
)

const defaultConfig = "/etc/iotagent/config.json"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		os.Exit(exitCode(err))
	}
}

// overrides are the run flags that replace config file values.
type overrides struct {
	thing, endpoint, rootCA, cert, key, logLevel *string
	port                                         *int
}

func runFlags(fs *flag.FlagSet) overrides {
	return overrides{
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
	for _, p := range []*string{o.rootCA, o.cert, o.key} {
		*p = absPath(*p)
	}
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

// loadConfigWith reads, parses and validates the config file, with
// override (the command line) applied before the derived defaults.
func loadConfigWith(path string, override func(*config.Config)) (config.Config, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return config.Config{}, &configError{fmt.Errorf("config %s: %w", path, err)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return config.Config{}, &configError{err}
	}
	c, err := config.ParseWith(data, filepath.Dir(abs), override)
	if err != nil {
		return c, &configError{fmt.Errorf("config %s:\n%w", path, err)}
	}
	if err := c.Validate(); err != nil {
		return c, &configError{fmt.Errorf("config %s:\n%w", path, err)}
	}
	return c, nil
}

const runText = `Runs the agent until SIGINT or SIGTERM: what the systemd unit starts.
The flags override the config file; --state-dir also moves the paths that
default to places under it (identity, sim pipes). Without --config, a
config adopted at first boot (STATE/firstboot/config.json) wins over the
packaged default. With --json the log is JSON (log.format).`

func runSetup(fs *flag.FlagSet) runFunc {
	ov := runFlags(fs)
	return func(x *inv) error {
		cfg, err := x.loadConfig(func(c *config.Config) {
			ov.apply(c)
			if x.json {
				c.Log.Format = "json"
			}
		})
		if err != nil {
			return err
		}
		err = runAgent(cfg, x.stderr)
		if mismatch := (*agent.ThingMismatchError)(nil); errors.As(err, &mismatch) {
			return fmt.Errorf("config %s: %w", x.configFile(), err)
		}
		return err
	}
}

func runAgent(cfg config.Config, stderr io.Writer) error {
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

const validateText = `Checks a config file (FILE, else --config) and lists every problem, one
line each, each starting with the path of the key. --state-dir applies as
it does for run.`

func validateSetup(x *inv) error {
	{
		if len(x.args) == 1 {
			x.cfgPath, x.cfgExplicit = x.args[0], true
		}
		path := x.configFile()
		_, err := x.loadConfig(nil)
		if x.json {
			return validateJSON(x.stdout, path, err)
		}
		if err != nil {
			return &exitError{code: exitFail, err: err}
		}
		fmt.Fprintf(x.stdout, "%s: ok\n", path)
		return nil
	}
}

// versionCmd prints the version, commit and platform.
func versionCmd(x *inv) error {
	if x.json {
		return printJSON(x.stdout, map[string]string{"version": version.Version, "string": version.String()})
	}
	fmt.Fprintln(x.stdout, "iotagent", version.String())
	return nil
}
