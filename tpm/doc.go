// Package tpm holds the device's private key and hands out a crypto.Signer
// for TLS client authentication and certificate signing requests; the key
// itself never leaves a KeyStore through this API.
//
// Two stores implement KeyStore and Generator:
//
//   - FileStore: a PEM file that must be readable by its owner only.
//   - TPMStore: an ECC P-256 signing key created inside a TPM 2.0 under the
//     owner hierarchy's storage root key and persisted at a handle
//     (0x81000010 by default), reached through /dev/tpmrm0 on a Pi or
//     through swtpm over TCP ("tcp://127.0.0.1:2321") in development and
//     CI. It uses go-tpm's tpm2 API; one mutex serialises every TPM command.
//     The key is fixedTPM: it cannot be exported at all.
//
// Callers depend on KeyStore (and, to create a key, Generator) and never on
// the backend; OpenKeyStore opens the one the configuration names.
//
// Tests: the TPM store is tested against go-tpm-tools' in-process simulator
// (cgo only, in build-tagged test files, so CGO_ENABLED=0 builds stay free
// of it) and against swtpm and tpm2-tools (Debian packages swtpm,
// swtpm-tools, tpm2-tools) when they are installed; under CI=true their
// absence fails the tests.
//
// Library code: nothing here logs; the caller logs which store it opened.
package tpm
