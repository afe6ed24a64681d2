package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/version"
	"github.com/iotagent/iotagent/ota"
)

const otaInitText = `Creates STATE/ota with this binary (or --binary) in slot a as the
committed version, and the symlinks the systemd unit starts the agent
through: STATE/ota/current/iotagent (ExecStart) and
STATE/ota/committed/iotagent (ExecStartPre, "ota prestart"). When STATE/ota
exists it only repairs the symlinks, so it is safe to run before every
start; with --upgrade (the package's postinst) it also installs the binary
into the committed slot when no update is in progress and the version
differs.`

func otaInitSetup(fs *flag.FlagSet) runFunc {
	binary := fs.String("binary", "", "the binary to install (default: this one)")
	ver := fs.String("version", version.Version, "its version")
	upgrade := fs.Bool("upgrade", false, "install the binary into the committed slot if it is another version (package upgrade)")
	return func(x *inv) error { return otaInit(x, binary, ver, *upgrade) }
}

// otaInitResult is ota init's --json answer.
type otaInitResult struct {
	Dir     string `json:"dir"`
	Version string `json:"version"`
}

func otaInit(x *inv, binary, ver *string, upgrade bool) error {
	stateDir, err := x.stateDirPath()
	if err != nil {
		return err
	}
	if *binary == "" {
		if *binary, err = os.Executable(); err != nil {
			return fmt.Errorf("ota init: %w", err)
		}
	}
	if upgrade {
		err = ota.Upgrade(stateDir, *binary, *ver)
	} else {
		err = ota.Init(stateDir, *binary, *ver)
	}
	if err != nil {
		return err
	}
	r := otaInitResult{Dir: ota.NewLayout(stateDir).Dir, Version: *ver}
	if x.json {
		return printJSON(x.stdout, r)
	}
	fmt.Fprintf(x.stdout, "ota: %s ready (%s)\n", r.Dir, r.Version)
	return nil
}

const otaPrestartText = `Decides which slot the agent starts from. The systemd unit runs it before
every start from the committed (known-good) binary:
ExecStartPre=STATE/ota/committed/iotagent ota prestart. While a new version
is on trial it counts the start and rolls back when the new version
recorded a failure, cannot run on this CPU, or used up its starts; it
repairs the symlinks in every case. Without OTA state it does nothing.`

func otaPrestart(x *inv) error {
	stateDir, err := x.stateDirPath()
	if err != nil {
		return err
	}
	d, err := ota.PreStart(stateDir, time.Now())
	if err != nil {
		return err
	}
	if x.json {
		return printJSON(x.stdout, struct {
			Slot       string `json:"slot,omitempty"`
			Trial      bool   `json:"trial"`
			Start      int    `json:"start,omitempty"`
			RolledBack bool   `json:"rolled_back"`
			Reason     string `json:"reason,omitempty"`
		}{d.Slot, d.Trial, d.Start, d.RolledBack, d.Reason})
	}
	stdout := x.stdout
	switch {
	case d.RolledBack:
		fmt.Fprintf(stdout, "ota prestart: rolled back to slot %s: %s\n", d.Slot, d.Reason)
	case d.Trial:
		fmt.Fprintf(stdout, "ota prestart: slot %s on trial, start %d\n", d.Slot, d.Start)
	case d.Reason != "":
		fmt.Fprintf(stdout, "ota prestart: slot %s: %s\n", d.Slot, d.Reason)
	case d.Slot != "":
		fmt.Fprintf(stdout, "ota prestart: slot %s\n", d.Slot)
	default:
		fmt.Fprintln(stdout, "ota prestart: no OTA state")
	}
	return nil
}

const otaCommitText = `Makes the version on trial the committed one now, through the running
agent. A new version is on trial from its first start after an ota job
until it commits itself, which it does once it has connected and synced
its shadow; before that, PreStart rolls it back if it fails, hangs or does
not commit within ota.max_starts starts. Commit it by hand when you know it
is good but it cannot connect yet (no network in the workshop). Nothing on
trial and this version committed: says so and exits 0.`

func otaCommit(x *inv) error {
	var r localapi.OTAChange
	if err := x.do(localapi.ActionOTACommit, nil, &r); err != nil {
		return otaActionError(err)
	}
	if x.json {
		return printJSON(x.stdout, r)
	}
	fmt.Fprintln(x.stdout, "ota commit:", r.Message)
	return nil
}

const otaRollbackText = `Goes back to the previous version, through the running agent: during a
trial, abandons the version on trial; after a commit, makes the other slot
(the version that ran before the update) the committed one again. The
version left is put on the failed list and never installed again
automatically (an ota job for it fails; release a newer one). The agent
then restarts (exit 0; systemd starts it again through ota prestart) and
runs the committed slot. The output says which slot and version run next.`

func otaRollbackSetup(fs *flag.FlagSet) runFunc {
	reason := fs.String("reason", "", "why, recorded in the OTA state (iotagent ota status shows it)")
	return func(x *inv) error {
		var r localapi.OTAChange
		if err := x.do(localapi.ActionOTARollback, localapi.OTARollback{Reason: *reason}, &r); err != nil {
			return otaActionError(err)
		}
		if x.json {
			return printJSON(x.stdout, r)
		}
		fmt.Fprintln(x.stdout, "ota rollback:", r.Message)
		return nil
	}
}

// otaActionError explains "not provided".
func otaActionError(err error) error {
	if errors.Is(err, localapi.ErrNotProvided) {
		return fmt.Errorf("%w (OTA is off in this agent's config: ota.enabled)", err)
	}
	return err
}

// readPassword reads the first line of a password file ("" for no file).
func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("password file %s: the first line is empty", path)
	}
	return pw, nil
}

// readSecretKey reads and loads a minisign secret key file, with the
// password from passwordFile when the key is encrypted.
func readSecretKey(keyPath, passwordFile string) (*ota.SecretKey, error) {
	if keyPath == "" {
		return nil, usagef("--key: the minisign secret key file is required")
	}
	sec, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	password, err := readPassword(passwordFile)
	if err != nil {
		return nil, err
	}
	k, err := ota.LoadSecretKey(sec, password)
	if err != nil {
		if errors.Is(err, ota.ErrKeyEncrypted) {
			return nil, fmt.Errorf("%s: %w (an encrypted key: give its password with --password-file)", keyPath, err)
		}
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	return k, nil
}

const otaSignText = `Signs FILE with a minisign secret key and writes FILE.minisig, in the
format of minisign -S (prehashed Ed25519): minisign -Vm FILE -p KEY.pub
checks it, and the agent accepts it from a key in ota.trusted_keys. The
signed (trusted) comment carries --version and --arch: devices take the
version and CPU their update rules use from there, and refuse a job whose
document says otherwise. An existing FILE.minisig is replaced. An encrypted key (minisign -G, or
iotagent ota keygen --password-file) needs --password-file; its first line
is the password.`

func otaSignSetup(fs *flag.FlagSet) runFunc {
	key := fs.String("key", "", "the minisign secret key file (.key)")
	pwFile := fs.String("password-file", "", "file whose first line is the key's password (none: the key is not encrypted)")
	ver := fs.String("version", "", "FILE's version, signed with it, e.g. 1.4.0 (required)")
	arch := fs.String("arch", "", "the CPU FILE is for, signed with it (default: from FILE's ELF header)")
	return func(x *inv) error {
		if *ver == "" {
			return &usageError{cmd: x.cmd, msg: "iotagent ota sign: --version is required (devices take the version from the signature)"}
		}
		file := x.args[0]
		if *arch == "" {
			a, err := ota.ELFArch(file)
			if err != nil {
				return fmt.Errorf("ota sign: %w (give --arch)", err)
			}
			*arch = a
		}
		k, err := readSecretKey(*key, *pwFile)
		if err != nil {
			return err
		}
		sigPath, err := signFile(k, file, ota.Meta{Version: *ver, Arch: *arch})
		if err != nil {
			return err
		}
		if x.json {
			return printJSON(x.stdout, map[string]string{"file": file, "signature": sigPath, "key_id": k.KeyID()})
		}
		fmt.Fprintf(x.stdout, "signed %s: %s (key ID %s)\n", file, sigPath, k.KeyID())
		return nil
	}
}

// signFile writes file.minisig, vouching for m, and returns its path.
func signFile(k *ota.SecretKey, file string, m ota.Meta) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	defer f.Close()
	sig, err := k.Sign(f, filepath.Base(file), now(), m)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", file, err)
	}
	sigPath := file + ".minisig"
	if err := atomicfile.WriteFile(sigPath, sig, 0o644); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return sigPath, nil
}

const otaKeygenText = `Makes a minisign key pair for signing releases: PREFIX.pub, the public
key (its second line, "RW…", goes into every device's ota.trusted_keys),
and PREFIX.key, the secret key (mode 0600; keep it off the devices and
out of the repository). Existing files are never overwritten.

Without --password-file the secret key is NOT encrypted (as minisign -G -W):
fit for a key kept in a CI secret store. With it, the key is encrypted
with the password on the file's first line (as minisign -G; scrypt, this
takes a few seconds and about 1 GiB of memory).`

func otaKeygenSetup(fs *flag.FlagSet) runFunc {
	out := fs.String("out", "", "write PREFIX.pub and PREFIX.key")
	pwFile := fs.String("password-file", "", "encrypt the secret key with the first line of this file (none: not encrypted)")
	return func(x *inv) error { return otaKeygen(x, out, pwFile) }
}

func otaKeygen(x *inv, out, pwFile *string) error {
	if *out == "" {
		return &usageError{cmd: x.cmd, msg: "iotagent ota keygen: --out PREFIX is required"}
	}
	pubPath, keyPath := *out+".pub", *out+".key"
	for _, p := range []string{pubPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("ota keygen: %s exists; not overwriting a key (choose another --out)", p)
		}
	}
	pw, err := readPassword(*pwFile)
	if err != nil {
		return err
	}
	pub, sec, err := ota.GenerateKey(nil, pw)
	if err != nil {
		return fmt.Errorf("ota keygen: %w", err)
	}
	if err := atomicfile.WriteNew(keyPath, sec, 0o600); err != nil {
		return fmt.Errorf("ota keygen: %w", err)
	}
	if err := atomicfile.WriteNew(pubPath, pub, 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("ota keygen: %w", err)
	}
	pk, err := ota.ParsePublicKey(string(pub))
	if err != nil {
		return fmt.Errorf("ota keygen: %w", err)
	}
	line := pk.String()
	id, _ := ota.KeyID(line)
	enc := "not encrypted"
	if pw != "" {
		enc = "encrypted"
	}
	if x.json {
		return printJSON(x.stdout, map[string]any{"key_id": id, "secret_key": keyPath, "encrypted": pw != "", "public_key": pubPath, "trusted_key": line})
	}
	fmt.Fprintf(x.stdout, "key ID %s\nsecret key: %s (%s; keep it off the devices)\npublic key: %s\nput it in each device's config: \"ota\": {\"enabled\": true, \"trusted_keys\": [%q]}\n",
		id, keyPath, enc, pubPath, line)
	return nil
}

const otaReleaseText = `Prints the ota job document for FILE (an iotagent binary built for the
devices' CPU) on stdout, for aws iot create-job --document file://DOC:
{"operation":"ota","version":V,"file":{"url","size","sha256","signature",
"arch"}}. The version stamped in FILE (make cross VERSION=V) must be
exactly --version. It signs FILE first, with the version and arch in the
signature's trusted comment, when FILE.minisig does not exist (one made
by minisign -S -t "version:V arch:A" is used as it is), and checks, as a
device will, that size, SHA-256, signature (by SECKEY's public key),
signed version and arch agree, so that a stale FILE.minisig is caught here
and not on the fleet.

--url is where devices download FILE: an https URL, or for a private S3
object the AWS IoT placeholder
  '${aws:iot:s3-presigned-url:https://s3.REGION.amazonaws.com/BUCKET/KEY}'
with aws iot create-job --presigned-url-config (see docs/raspberry-pi.md).
The URL's host must be in the devices' ota.allowed_hosts when that is set.
--arch defaults to the CPU in FILE's ELF header (amd64, arm64, arm).
Devices refuse a version older than theirs unless --allow-downgrade, and
never reinstall a version that was rolled back on them.`

func otaReleaseSetup(fs *flag.FlagSet) runFunc {
	key := fs.String("key", "", "the minisign secret key file (.key)")
	pwFile := fs.String("password-file", "", "file whose first line is the key's password (none: the key is not encrypted)")
	url := fs.String("url", "", "where devices download FILE (https URL or the S3 presigned-URL placeholder)")
	ver := fs.String("version", "", "FILE's version (what iotagent version prints for it), e.g. 1.4.0")
	arch := fs.String("arch", "", "the devices' CPU: amd64, arm64, arm (default: from FILE's ELF header)")
	downgrade := fs.Bool("allow-downgrade", false, "let devices with a newer version install this one")
	return func(x *inv) error { return otaRelease(x, key, pwFile, url, ver, arch, downgrade) }
}

// otaRelease prints the job document (JSON, with or without --json).
func otaRelease(x *inv, key, pwFile, url, ver, arch *string, downgrade *bool) error {
	stdout, stderr := x.stdout, x.stderr
	if *url == "" || *ver == "" {
		return &usageError{cmd: x.cmd, msg: "iotagent ota release: --url and --version are required"}
	}
	file := x.args[0]
	k, err := readSecretKey(*key, *pwFile)
	if err != nil {
		return err
	}
	elfArch, err := ota.ELFArch(file)
	if err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	if *arch == "" {
		*arch = elfArch
	}
	if err := (ota.Meta{Version: *ver, Arch: *arch}).Check(); err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	// The new version commits its trial only if it runs as the version
	// the job names: a build stamped otherwise would be rolled back on
	// every device.
	if err := checkStamp(file, *ver); err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	sigPath := file + ".minisig"
	sig, err := os.ReadFile(sigPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := signFile(k, file, ota.Meta{Version: *ver, Arch: *arch}); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "signed %s: %s\n", file, sigPath)
		if sig, err = os.ReadFile(sigPath); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("ota release: %w", err)
	default:
		fmt.Fprintf(stderr, "using the existing signature %s\n", sigPath)
	}
	size, sum, err := ota.FileDigest(file)
	if err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	r := ota.Release{Version: *ver, URL: *url, Size: size, SHA256: sum, Signature: string(sig), Arch: *arch, AllowDowngrade: *downgrade}
	if err := ota.VerifyRelease(file, r, []string{k.PublicKey()}); err != nil {
		return fmt.Errorf("ota release: %s does not verify: %w", file, err)
	}
	doc, err := r.Document()
	if err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	// What a device parses: the placeholder replaced by a URL.
	onDevice := r
	onDevice.URL = presignedTarget(r.URL)
	if d, err := onDevice.Document(); err != nil {
		return fmt.Errorf("ota release: %w", err)
	} else if _, err := ota.ParseDocument(d, nil); err != nil {
		return fmt.Errorf("ota release: %w", err)
	}
	fmt.Fprintf(stderr, "release %s for %s: %d bytes, sha256 %s, signed by key ID %s; verified\n", *ver, *arch, size, sum, k.KeyID())
	_, err = stdout.Write(doc)
	return err
}

// presignedTarget returns the URL inside an AWS IoT presigned-URL
// placeholder (${aws:iot:s3-presigned-url:URL}), or url itself.
func presignedTarget(url string) string {
	const pre = "${aws:iot:s3-presigned-url:"
	if strings.HasPrefix(url, pre) && strings.HasSuffix(url, "}") {
		return url[len(pre) : len(url)-1]
	}
	return url
}

// checkStamp compares the version stamped in the binary at file (the
// Makefile's -X of internal/version; see version.Stamps) with want,
// exactly.
func checkStamp(file, want string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	switch got := version.Stamps(data); {
	case len(got) == 0:
		return fmt.Errorf("%s carries no version stamp (a plain go build?): build it with make cross VERSION=%s, or devices would run it as \"dev\" and roll it back", file, want)
	case len(got) > 1:
		return fmt.Errorf("%s carries several version stamps %q: not one release build", file, got)
	case got[0] != want:
		return fmt.Errorf("%s is stamped version %s, not %s: build it with make cross VERSION=%s (or release it as --version %s), or devices roll it back", file, got[0], want, want, got[0])
	}
	return nil
}
