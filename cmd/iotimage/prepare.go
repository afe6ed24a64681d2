package main

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"path/filepath"
	"slices"
	"strings"

	"github.com/ulikunitz/xz"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/internal/mbr"
	"github.com/iotagent/iotagent/tpm"
)

const prepareText = `Writes onto the FAT boot partition of a Raspberry Pi OS image (--image, an
.img or .img.xz), of a card (--device, after a confirmation) or of a boot
partition mounted already (--boot-dir):

  iotagent/config.json      the config (--config) with the claim certificate
  iotagent/claim.crt, .key  and key (and --root-ca as root-ca.pem), adopted
                            and removed by "iotagent firstboot"
  iotagent-setup/           the .deb and setup.sh, which installs it, runs
                            iotagent firstboot, enables and starts the
                            service, and logs to iotagent-setup/setup.log
  user-data, meta-data,     cloud-init's NoCloud files (Trixie), running
  network-config            setup.sh; network-config only with --wifi
  firstrun.sh, cmdline.txt  Bookworm's first-boot script, run once from an
                            entry appended to cmdline.txt

No root and no mounting: the partition table and FAT are read and written
in-process. The config is validated first, with every problem listed, and
nothing is written if it does not validate. Running prepare again gives the
same boot partition. A user-data, firstrun.sh or Wi-Fi network-config that
iotimage did not write (e.g. Raspberry Pi Imager's customisation) is
refused unless --replace-user-data. See docs/flashing.md.`

type prepareOpts struct {
	image, out, bootDir, device          string
	deb, config, claimCert, claimKey     string
	rootCA, hooks                        string
	wifi, wifiPSKFile, wifiCountry       string
	sshKey, hostname, user, passwordHash string
	yes, replaceUserData                 bool
}

func prepareSetup(fs *flag.FlagSet) func(*inv) error {
	var o prepareOpts
	fs.StringVar(&o.image, "image", "", "the Raspberry Pi OS `IMG` (.img, or .img.xz: decompressed to --out); written in place without --out")
	fs.StringVar(&o.out, "out", "", "write the prepared image to `OUT.img` (default for an .xz: its name without .xz)")
	fs.StringVar(&o.bootDir, "boot-dir", "", "a boot partition mounted at `DIR`, instead of --image")
	fs.StringVar(&o.device, "device", "", "a card's block `DEVICE` (/dev/sdX, /dev/mmcblk0), instead of --image: asks for a confirmation, or needs --yes")
	fs.BoolVar(&o.yes, "yes", false, "write --device without asking")
	fs.StringVar(&o.deb, "deb", "", "the iotagent package `FILE` (iotagent_VERSION_ARCH.deb for the Pi's architecture)")
	fs.StringVar(&o.config, "config", "", "the agent's config `FILE` for the device; provisioning.claim_cert and claim_key are set to the claim files")
	fs.StringVar(&o.claimCert, "claim-cert", "", "the claim certificate `FILE` (PEM) for fleet provisioning")
	fs.StringVar(&o.claimKey, "claim-key", "", "the claim certificate's private key `FILE` (PEM)")
	fs.StringVar(&o.rootCA, "root-ca", "", "a CA bundle `FILE` for mqtt.root_ca (default: the config's, e.g. the system bundle)")
	fs.StringVar(&o.hooks, "hooks", "both", "which first-boot hooks to write: both, cloud-init (Trixie) or firstrun (Bookworm)")
	fs.StringVar(&o.wifi, "wifi", "", "the Wi-Fi network's `SSID` (needs --wifi-psk-file)")
	fs.StringVar(&o.wifiPSKFile, "wifi-psk-file", "", "a `FILE` holding the Wi-Fi passphrase (its first line)")
	fs.StringVar(&o.wifiCountry, "wifi-country", "", "the Wi-Fi regulatory country `CC` (GB, DE, US, ...); the Pi keeps Wi-Fi off without one")
	fs.StringVar(&o.sshKey, "ssh-key", "", "an authorized_keys `FILE`: SSH is enabled, for these keys only")
	fs.StringVar(&o.hostname, "hostname", "", "the device's host `NAME`")
	fs.StringVar(&o.user, "user", "", "the first user's `NAME` (with sudo; its password is locked unless --password-hash-file)")
	fs.StringVar(&o.passwordHash, "password-hash-file", "", "a `FILE` holding --user's password hash (openssl passwd -6, or mkpasswd), for the console and the serial console")
	fs.BoolVar(&o.replaceUserData, "replace-user-data", false, "replace first-boot files someone else wrote (user-data, firstrun.sh and its cmdline.txt entry, a Wi-Fi network-config)")
	return func(x *inv) error {
		res, err := prepare(o, x.stdin, x.stderr)
		if err != nil {
			return err
		}
		if x.json {
			return printJSON(x.stdout, res)
		}
		printResult(x.stdout, res)
		return nil
	}
}

// result is what prepare did, as --json prints it.
type result struct {
	Target     string    `json:"target"`
	Partition  *partJSON `json:"partition,omitempty"`
	Deb        string    `json:"deb"`
	Hooks      []string  `json:"hooks"`
	InstanceID string    `json:"instance_id,omitempty"`
	Written    []string  `json:"written"`
	Unchanged  []string  `json:"unchanged"`
	Removed    []string  `json:"removed"`
	Notes      []string  `json:"notes,omitempty"`
	// FATRepairs are what iotimage corrected in the FAT after its writes
	// (go-diskfs's slips: '..' entries, lost clusters, FSInfo).
	FATRepairs []string `json:"fat_repairs,omitempty"`
}

type partJSON struct {
	Index int    `json:"index"`
	Type  string `json:"type"`
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
	Label string `json:"label"`
}

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "prepared %s", r.Target)
	if p := r.Partition; p != nil {
		fmt.Fprintf(w, " (partition %d, %s, label %q, at byte %d)", p.Index, p.Type, p.Label, p.Start)
	}
	fmt.Fprintf(w, "\n  package:  %s\n  hooks:    %s\n", r.Deb, strings.Join(r.Hooks, ", "))
	if r.InstanceID != "" {
		fmt.Fprintf(w, "  instance: %s\n", r.InstanceID)
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"written", r.Written}, {"unchanged", r.Unchanged}, {"removed", r.Removed}} {
		if len(l.names) > 0 {
			fmt.Fprintf(w, "  %-9s %s\n", l.what+":", strings.Join(l.names, " "))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// inputs are the files prepare puts on the partition, read and checked.
type inputs struct {
	config                      []byte // rewritten: claim and CA paths relative to iotagent/
	claimCert, claimKey, rootCA []byte
	debName                     string
	deb                         []byte
	settings                    settings
	notes                       []string
}

// prepare checks every input, then opens the target and writes it.
func prepare(o prepareOpts, stdin io.Reader, stderr io.Writer) (result, error) {
	if err := o.check(); err != nil {
		return result{}, err
	}
	in, err := readInputs(o)
	if err != nil {
		return result{}, err
	}
	target, bfs, part, err := openTarget(o, stdin, stderr)
	if err != nil {
		return result{}, err
	}
	res := result{Target: target, Deb: in.debName, Notes: in.notes}
	if part != nil {
		res.Partition = part
	}
	werr := write(bfs, o, in, &res)
	cerr := bfs.Close()
	if fx, ok := bfs.(*fatFS); ok {
		res.FATRepairs = fx.fixes
	}
	if werr != nil {
		return res, werr
	}
	if cerr != nil {
		return res, cerr
	}
	return res, nil
}

func (o prepareOpts) check() error {
	var probs []string
	n := 0
	for _, t := range []string{o.image, o.bootDir, o.device} {
		if t != "" {
			n++
		}
	}
	if n != 1 {
		probs = append(probs, "give exactly one of --image, --boot-dir and --device")
	}
	if o.out != "" && o.image == "" {
		probs = append(probs, "--out goes with --image")
	}
	if o.yes && o.device == "" {
		probs = append(probs, "--yes goes with --device")
	}
	for _, f := range []struct{ flag, v string }{{"--deb", o.deb}, {"--config", o.config}, {"--claim-cert", o.claimCert}, {"--claim-key", o.claimKey}} {
		if f.v == "" {
			probs = append(probs, f.flag+" is required")
		}
	}
	switch o.hooks {
	case "both", "cloud-init", "firstrun":
	default:
		probs = append(probs, fmt.Sprintf("--hooks %q: want both, cloud-init or firstrun", o.hooks))
	}
	if (o.wifi == "") != (o.wifiPSKFile == "") {
		probs = append(probs, "--wifi and --wifi-psk-file go together")
	}
	if o.passwordHash != "" && o.user == "" {
		probs = append(probs, "--password-hash-file goes with --user")
	}
	if o.wifiCountry != "" && o.wifi == "" {
		probs = append(probs, "--wifi-country goes with --wifi")
	}
	if len(probs) > 0 {
		c := find("prepare")
		return &usageError{cmd: c, msg: "iotimage prepare: " + strings.Join(probs, "; ")}
	}
	return nil
}

// readInputs reads and checks every input file and setting, and reports
// all problems at once.
func readInputs(o prepareOpts) (*inputs, error) {
	in := &inputs{}
	var probs []error
	bad := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	read := func(flagName, name string, limit int64) []byte {
		if name == "" {
			return nil
		}
		data, err := readLimited(name, limit)
		if err != nil {
			bad("%s: %w", flagName, err)
		}
		return data
	}
	const oneMiB = 1 << 20 // firstboot adopts files of at most 1 MiB
	cfgData := read("--config", o.config, config.MaxFileSize)
	in.claimCert = read("--claim-cert", o.claimCert, oneMiB)
	in.claimKey = read("--claim-key", o.claimKey, oneMiB)
	in.rootCA = read("--root-ca", o.rootCA, oneMiB)
	in.deb = read("--deb", o.deb, 512<<20)

	if in.deb != nil {
		d, err := readDeb(in.deb)
		if err != nil {
			bad("--deb %s: %w", o.deb, err)
		} else {
			in.debName = d.FileName()
		}
	}
	if in.claimCert != nil && in.claimKey != nil {
		if err := checkClaim(in.claimCert, in.claimKey); err != nil {
			bad("--claim-cert %s, --claim-key %s: %w", o.claimCert, o.claimKey, err)
		}
	}
	if cfgData != nil {
		cfg, notes, err := stageConfig(o.config, cfgData, in)
		if err != nil {
			bad("%w", err)
		} else {
			in.config = cfg
			in.notes = append(in.notes, notes...)
		}
	}
	s, err := readSettings(o)
	if err != nil {
		probs = append(probs, err)
	}
	in.settings = s
	if len(probs) > 0 {
		return nil, &inputError{errors.Join(probs...)}
	}
	return in, nil
}

func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, want a file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is over %d KiB", name, limit>>10)
	}
	return data, nil
}

// checkClaim checks that the claim certificate is a PEM certificate and
// the key a usable private key of it.
func checkClaim(certPEM, keyPEM []byte) error {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return errors.New("the claim certificate is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("the claim certificate: %w", err)
	}
	dir, err := os.MkdirTemp("", "iotimage-key-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kp := filepath.Join(dir, "claim.key")
	if err := os.WriteFile(kp, keyPEM, 0o600); err != nil {
		return err
	}
	ks := tpm.NewFileStore(kp)
	defer ks.Close()
	signer, err := ks.Signer()
	if err != nil {
		return fmt.Errorf("the claim key: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("the claim key is not the claim certificate's key")
	}
	return nil
}

// stageConfig rewrites the config's claim (and root CA) paths to the
// files iotimage puts next to it, writes the set into a private temporary
// directory as iotagent firstboot will adopt it, and validates it there.
// Paths outside that directory name files on the device; those that do not
// exist here are noted, not refused.
func stageConfig(name string, data []byte, in *inputs) ([]byte, []string, error) {
	// The file as given: syntax, unknown and duplicate fields, types.
	if _, err := config.Parse(data, filepath.Dir(name)); err != nil {
		return nil, nil, fmt.Errorf("--config %s:\n%w", name, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("--config %s: %w", name, err)
	}
	set := func(section, key, value string) error {
		sec := map[string]json.RawMessage{}
		if raw, ok := doc[section]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &sec); err != nil {
				return fmt.Errorf("--config %s: %s: %w", name, section, err)
			}
		}
		sec[key], _ = json.Marshal(value)
		doc[section], _ = json.Marshal(sec)
		return nil
	}
	if err := set("provisioning", "claim_cert", "claim.crt"); err != nil {
		return nil, nil, err
	}
	if err := set("provisioning", "claim_key", "claim.key"); err != nil {
		return nil, nil, err
	}
	if in.rootCA != nil {
		if err := set("mqtt", "root_ca", "root-ca.pem"); err != nil {
			return nil, nil, err
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, nil, err
	}
	out := b.Bytes()

	stage, err := os.MkdirTemp("", "iotimage-stage-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(stage)
	for n, d := range agentFiles(out, in) {
		if err := os.WriteFile(filepath.Join(stage, n), d, 0o600); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := config.Parse(out, stage)
	if err == nil {
		err = cfg.Validate()
	}
	var probs []error
	var notes []string
	if cfg.ThingName != "" {
		notes = append(notes, fmt.Sprintf("thing_name is %q: every card made from this image connects as that one thing; leave it out for a batch (fleet provisioning names each thing)", cfg.ThingName))
	}
	for _, fe := range config.FieldErrors(err) {
		if errors.Is(fe, fs.ErrNotExist) && !strings.Contains(fe.Problem, stage) {
			notes = append(notes, fmt.Sprintf("%s: not checked here: %s (a path on the device)", fe.Path, fe.Problem))
			continue
		}
		probs = append(probs, errors.New(strings.ReplaceAll(fe.Error(), stage, agentDir)))
	}
	if err != nil && len(config.FieldErrors(err)) == 0 {
		probs = append(probs, err)
	}
	if len(probs) > 0 {
		return nil, nil, fmt.Errorf("--config %s (as the device will read it):\n%w", name, errors.Join(probs...))
	}
	return out, notes, nil
}

// agentFiles are the files of iotagent/ on the partition.
func agentFiles(cfg []byte, in *inputs) map[string][]byte {
	m := map[string][]byte{"config.json": cfg, "claim.crt": in.claimCert, "claim.key": in.claimKey}
	if in.rootCA != nil {
		m["root-ca.pem"] = in.rootCA
	}
	return m
}

func readSettings(o prepareOpts) (settings, error) {
	s := settings{hostname: o.hostname, user: o.user, wifiSSID: o.wifi, wifiCountry: o.wifiCountry}
	var probs []error
	bad := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	if h := o.hostname; h != "" && !validHostname(h) {
		bad("--hostname %q: want 1 to 63 of a-z 0-9 and -, not starting or ending with -", h)
	}
	if u := o.user; u != "" {
		if !validUser(u) {
			bad("--user %q: want 1 to 32 of a-z 0-9 _ -, starting with a letter or _", u)
		} else if u == "root" || u == "iotagent" {
			bad("--user %q: that user is the system's or the agent's; pick a person's name", u)
		}
	}
	if o.wifi != "" {
		if len(o.wifi) > 32 {
			bad("--wifi %q: an SSID is at most 32 bytes", o.wifi)
		}
		if strings.ContainsAny(o.wifi, "\n\r\x00") {
			bad("--wifi: the SSID has a line break or NUL")
		}
		data, err := readLimited(o.wifiPSKFile, 4096)
		if err != nil {
			bad("--wifi-psk-file: %w", err)
		} else {
			psk := strings.TrimRight(strings.SplitN(string(data), "\n", 2)[0], "\r")
			s.wifiPSK = psk
			if !validPSK(psk) {
				bad("--wifi-psk-file %s: want a passphrase of 8 to 63 printable ASCII characters, or 64 hex digits, on its first line", o.wifiPSKFile)
			}
		}
	}
	if c := o.wifiCountry; c != "" && !(len(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z') {
		bad("--wifi-country %q: want an ISO 3166 code in capitals, e.g. GB", c)
	}
	if o.passwordHash != "" {
		data, err := readLimited(o.passwordHash, 4096)
		if err != nil {
			bad("--password-hash-file: %w", err)
		} else {
			h := strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
			s.passwordHash = h
			if !validHash(h) {
				bad("--password-hash-file %s: want a crypt(3) hash on its first line ($6$... from openssl passwd -6, $y$... from mkpasswd), not the password itself", o.passwordHash)
			}
		}
	}
	if o.sshKey != "" {
		data, err := readLimited(o.sshKey, 64<<10)
		if err != nil {
			bad("--ssh-key: %w", err)
		} else {
			sc := bufio.NewScanner(bytes.NewReader(data))
			for n := 1; sc.Scan(); n++ {
				l := strings.TrimSpace(sc.Text())
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				if !strings.HasPrefix(l, "ssh-") && !strings.HasPrefix(l, "ecdsa-") && !strings.HasPrefix(l, "sk-") {
					bad("--ssh-key %s:%d: not a public key line (ssh-ed25519 AAAA..., ssh-rsa ..., ecdsa-...); a private key?", o.sshKey, n)
					continue
				}
				s.sshKeys = append(s.sshKeys, l)
			}
			if len(s.sshKeys) == 0 && len(probs) == 0 {
				bad("--ssh-key %s: no public key in it", o.sshKey)
			}
		}
	}
	return s, errors.Join(probs...)
}

func validHostname(h string) bool {
	if len(h) < 1 || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validUser(u string) bool {
	if len(u) < 1 || len(u) > 32 || !(u[0] >= 'a' && u[0] <= 'z' || u[0] == '_') {
		return false
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validHash accepts a SHA-512, SHA-256 or yescrypt crypt(3) hash.
func validHash(h string) bool {
	if !(strings.HasPrefix(h, "$6$") || strings.HasPrefix(h, "$5$") || strings.HasPrefix(h, "$y$")) || len(h) < 20 || len(h) > 512 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("$./=", c)) {
			return false
		}
	}
	return true
}

func validPSK(p string) bool {
	if len(p) == 64 {
		if _, err := hex.DecodeString(p); err == nil {
			return true
		}
	}
	if len(p) < 8 || len(p) > 63 {
		return false
	}
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// write brings the boot partition to the wanted content.
func write(bfs bootFS, o prepareOpts, in *inputs, res *result) error {
	cloudInit := o.hooks == "both" || o.hooks == "cloud-init"
	firstrun := o.hooks == "both" || o.hooks == "firstrun"
	if cloudInit {
		res.Hooks = append(res.Hooks, "cloud-init")
	}
	if firstrun {
		res.Hooks = append(res.Hooks, "firstrun")
	}
	want := map[string][]byte{}
	for n, d := range agentFiles(in.config, in) {
		want[agentDir+"/"+n] = d
	}
	want[setupDir+"/"+in.debName] = in.deb
	want[setupScript] = setupSh
	var remove []string

	read := func(name string) ([]byte, bool, error) {
		data, err := bfs.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		return data, true, nil
	}
	replaceHint := "re-run with --replace-user-data to replace it with iotimage's (give the settings to iotimage: --hostname, --user, --ssh-key, --wifi), or flash the image again without Raspberry Pi Imager's OS customisation"
	refuse := func(format string, args ...any) error {
		return &refusedError{err: fmt.Errorf(format, args...), hint: replaceHint}
	}

	// cloud-init's files.
	ud, haveUD, err := read(userData)
	if err != nil {
		return err
	}
	nc, haveNC, err := read(networkConfig)
	if err != nil {
		return err
	}
	md, haveMD, err := read(metaData)
	if err != nil {
		return err
	}
	if cloudInit {
		if haveUD && !isOurs(ud) && !isStockUserData(ud) && !o.replaceUserData {
			return refuse("%s: user-data was not written by iotimage (it configures the device already, e.g. Raspberry Pi Imager's OS customisation)", res.Target)
		}
		want[userData] = userDataFile(in.settings)
		if in.settings.wifiSSID != "" {
			if haveNC && !isOurs(nc) && configuresWifi(nc) && !o.replaceUserData {
				return refuse("%s: network-config was not written by iotimage and sets up Wi-Fi already", res.Target)
			}
			want[networkConfig] = networkConfigFile(in.settings)
		} else if haveNC && isOurs(nc) {
			remove = append(remove, networkConfig)
		}
	} else {
		for _, f := range []struct {
			name string
			data []byte
			have bool
		}{{userData, ud, haveUD}, {networkConfig, nc, haveNC}, {metaData, md, haveMD}} {
			if f.have && isOurs(f.data) {
				remove = append(remove, f.name)
			}
		}
	}

	// Bookworm's firstrun.sh and its cmdline.txt entry.
	fr, haveFR, err := read(firstrunFile)
	if err != nil {
		return err
	}
	cl, haveCL, err := read(cmdlineFile)
	if err != nil {
		return err
	}
	if firstrun {
		if !haveCL {
			return &refusedError{err: fmt.Errorf("%s: the boot partition has no cmdline.txt, which the firstrun hook needs: not a Raspberry Pi OS boot partition?", res.Target),
				hint: "give a Raspberry Pi OS image, or --hooks cloud-init"}
		}
		if haveFR && !isOurs(fr) && !o.replaceUserData {
			return refuse("%s: firstrun.sh was not written by iotimage (Raspberry Pi Imager's OS customisation on Bookworm writes one)", res.Target)
		}
		line, foreign := withCmdlineEntry(cl, true)
		if foreign != "" {
			if !o.replaceUserData {
				return refuse("%s: cmdline.txt runs another first-boot script already (%s)", res.Target, foreign)
			}
			line, _ = withCmdlineEntry(withoutForeignRun(cl), true)
		}
		want[firstrunFile] = firstrunScript(in.settings)
		want[cmdlineFile] = line
	} else {
		if haveFR && isOurs(fr) {
			remove = append(remove, firstrunFile)
		}
		if haveCL {
			if line, _ := withCmdlineEntry(cl, false); !bytes.Equal(line, cl) && bytes.Contains(cl, []byte(cmdlineEntry)) {
				want[cmdlineFile] = line
			}
		}
	}

	// The instance id covers everything else, so that cloud-init runs the
	// hook again exactly when something changed.
	if cloudInit {
		res.InstanceID = instanceID(want, func(n string) bool {
			return n == userData || n == networkConfig || strings.HasPrefix(n, agentDir+"/") || strings.HasPrefix(n, setupDir+"/")
		})
		want[metaData] = metaDataFile(res.InstanceID, in.settings.hostname)
	}

	// Stale files in the two directories iotimage owns.
	for _, dir := range []string{agentDir, setupDir} {
		names, err := bfs.List(dir)
		if errors.Is(err, fs.ErrNotExist) {
			if err := bfs.Mkdir(dir); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		for _, n := range names {
			p := dir + "/" + n
			if _, ok := want[p]; ok || (dir == setupDir && n == "setup.log") {
				continue
			}
			if _, ok := wantFold(want, p); ok {
				continue
			}
			remove = append(remove, p)
		}
	}

	// Removals first (an old .deb makes room for the new one), then the
	// files, meta-data last: a card pulled half-way has no new instance
	// id, and prepare run again completes it.
	slices.Sort(remove)
	for _, p := range remove {
		if err := bfs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", res.Target, err)
		}
		res.Removed = append(res.Removed, p)
	}
	names := make([]string, 0, len(want))
	for n := range want {
		if n != metaData {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if _, ok := want[metaData]; ok {
		names = append(names, metaData)
	}
	for _, n := range names {
		cur, have, err := read(n)
		if err != nil {
			return fmt.Errorf("%s: %w", res.Target, err)
		}
		if have && bytes.Equal(cur, want[n]) {
			res.Unchanged = append(res.Unchanged, n)
			continue
		}
		if err := bfs.WriteFile(n, want[n]); err != nil {
			return fmt.Errorf("%s: %w", res.Target, err)
		}
		res.Written = append(res.Written, n)
	}
	return nil
}

// wantFold finds p in want ignoring case (FAT names).
func wantFold(want map[string][]byte, p string) (string, bool) {
	for n := range want {
		if strings.EqualFold(n, p) {
			return n, true
		}
	}
	return "", false
}

// instanceID is derived from the files of the cloud-init hook (those
// for which part is true): the same content, the same id, whatever the
// other hook's files do.
func instanceID(files map[string][]byte, part func(string) bool) string {
	names := make([]string, 0, len(files))
	for n := range files {
		if part(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return "iotimage-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// openTarget opens what --image, --device or --boot-dir names.
func openTarget(o prepareOpts, stdin io.Reader, stderr io.Writer) (string, bootFS, *partJSON, error) {
	if o.bootDir != "" {
		fi, err := os.Stat(o.bootDir)
		if err != nil {
			return "", nil, nil, fmt.Errorf("--boot-dir: %w", err)
		}
		if !fi.IsDir() {
			return "", nil, nil, &refusedError{err: fmt.Errorf("--boot-dir %s is not a directory", o.bootDir), hint: "give the mount point of the card's boot partition (bootfs), e.g. /media/$USER/bootfs"}
		}
		return o.bootDir, dirFS{root: o.bootDir}, nil, nil
	}
	var name string
	if o.device != "" {
		name = o.device
		if err := checkDevice(o.device); err != nil {
			return "", nil, nil, err
		}
	} else {
		var err error
		if name, err = imageCopy(o); err != nil {
			return "", nil, nil, err
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return "", nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return "", nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	part, _, err := mbr.Boot(f, size)
	if err != nil {
		f.Close()
		return "", nil, nil, &refusedError{err: fmt.Errorf("%s: %w", name, err), hint: "give a Raspberry Pi OS image (.img or .img.xz from raspberrypi.com/software/operating-systems), whose first partition is the FAT boot partition"}
	}
	if o.device != "" {
		if err := confirm(o, name, size, part, stdin, stderr); err != nil {
			f.Close()
			return "", nil, nil, err
		}
	}
	bfs, err := openFAT(f, name, part)
	if err != nil {
		f.Close()
		var re *refusedError
		if errors.Is(err, mbr.ErrNoFAT) && !errors.As(err, &re) {
			err = &refusedError{err: err, hint: "give a Raspberry Pi OS image, whose first partition is the FAT boot partition"}
		}
		return "", nil, nil, err
	}
	pj := &partJSON{Index: part.Index, Type: mbr.FATTypes[part.Type], Start: part.Start, Size: part.Size, Label: bfs.label}
	return name, bfs, pj, nil
}

// imageCopy returns the image file to write: --image itself, or --out
// made from it (decompressed from .xz, or copied).
func imageCopy(o prepareOpts) (string, error) {
	isXZ := strings.HasSuffix(o.image, ".xz")
	out := o.out
	if out == "" {
		if !isXZ {
			return o.image, nil
		}
		out = strings.TrimSuffix(o.image, ".xz")
	}
	if a, b := absClean(out), absClean(o.image); a == b {
		return "", &usageError{cmd: find("prepare"), msg: fmt.Sprintf("iotimage prepare: --out %s is --image itself", out)}
	}
	src, err := os.Open(o.image)
	if err != nil {
		return "", fmt.Errorf("--image: %w", err)
	}
	defer src.Close()
	var r io.Reader = src
	if isXZ {
		xr, err := xz.NewReader(bufio.NewReaderSize(src, 1<<20))
		if err != nil {
			return "", &refusedError{err: fmt.Errorf("%s: not an xz file: %w", o.image, err), hint: "give the .img.xz as downloaded, or the decompressed .img"}
		}
		r = xr
	}
	tmp := out + ".iotimage-tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	_, cerr := copySparse(dst, r)
	serr := dst.Sync()
	clerr := dst.Close()
	if err := errors.Join(cerr, serr, clerr); err != nil {
		os.Remove(tmp)
		if isXZ && cerr != nil {
			return "", &refusedError{err: fmt.Errorf("decompress %s to %s: %w", o.image, out, err), hint: "the download is damaged or truncated: download it again (and check its SHA-256)"}
		}
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	return out, nil
}

// copySparse copies r to f, seeking over blocks of zeros (images are
// mostly empty space).
func copySparse(f *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		// Fill buf; io.ReadFull would hide a truncated stream's
		// io.ErrUnexpectedEOF behind a short last block.
		k := 0
		var err error
		for k < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[k:])
			k += m
		}
		if k > 0 {
			chunk := buf[:k]
			if allZero(chunk) {
				if _, serr := f.Seek(int64(k), io.SeekCurrent); serr != nil {
					return n, serr
				}
			} else if _, werr := f.Write(chunk); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, f.Truncate(n)
		}
		if err != nil {
			return n, err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func absClean(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// checkDevice refuses a --device that is not a block device or that is
// mounted (writing under a mounted file system corrupts it).
func checkDevice(dev string) error {
	fi, err := os.Stat(dev)
	if err != nil {
		return fmt.Errorf("--device: %w", err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return &refusedError{err: fmt.Errorf("--device %s is not a block device", dev), hint: "give the card's device (lsblk lists them), or --image for an image file"}
	}
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil // not Linux: nothing to check against
	}
	if src, dir, ok := mountOf(dev, mounts); ok {
		return &refusedError{err: fmt.Errorf("--device %s: %s is mounted on %s", dev, src, dir),
			hint: fmt.Sprintf("unmount it first (udisksctl unmount -b %s), or use --boot-dir %s", src, dir)}
	}
	return nil
}

// mountOf finds a mount of dev or one of its partitions in mounts (the
// format of /proc/mounts).
func mountOf(dev string, mounts []byte) (src, dir string, ok bool) {
	names := []string{dev}
	if real, err := filepath.EvalSymlinks(dev); err == nil && real != dev {
		names = append(names, real)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, n := range names {
			// /dev/sdb: /dev/sdb, /dev/sdb1; /dev/mmcblk0: /dev/mmcblk0p1.
			rest, found := strings.CutPrefix(f[0], n)
			if !found {
				continue
			}
			if last := n[len(n)-1]; last >= '0' && last <= '9' {
				// mmcblk0p1, loop0p1, nvme0n1p1 (and loop10 is another device)
				if rest != "" && !strings.HasPrefix(rest, "p") {
					continue
				}
				rest = strings.TrimPrefix(rest, "p")
			} else if strings.HasPrefix(rest, "p") {
				continue
			}
			if strings.Trim(rest, "0123456789") == "" && (rest != "" || f[0] == n) {
				return f[0], f[1], true
			}
		}
	}
	return "", "", false
}

// confirm asks on a terminal before a card is written, unless --yes.
func confirm(o prepareOpts, dev string, size int64, part mbr.Partition, stdin io.Reader, stderr io.Writer) error {
	if o.yes {
		return nil
	}
	f, ok := stdin.(*os.File)
	if ok {
		fi, err := f.Stat()
		ok = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	if !ok {
		return &refusedError{err: fmt.Errorf("--device %s: not confirmed (no terminal to ask on)", dev), hint: "add --yes to write the card without asking"}
	}
	fmt.Fprintf(stderr, "Write iotagent's first-boot files onto %s (%d MiB), boot %s? Type yes: ", dev, size>>20, part)
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &refusedError{err: fmt.Errorf("--device %s: not confirmed", dev), hint: "type yes to write it, or add --yes"}
	}
	return nil
}
