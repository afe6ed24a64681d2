// Package tpm holds the device's private key and hands out a crypto.Signer
// for TLS client authentication and certificate signing requests; the key
// itself never leaves a KeyStore through this API.
//
// Today the only KeyStore is FileStore, a PEM file that must be readable by
// its owner only. A TPM 2.0 backend (the key generated inside the TPM and
// used through go-tpm) will implement the same interface, so callers depend
// on KeyStore (and, to create a key, Generator) and never on the backend.
//
// Library code: nothing here logs; the caller logs which store it opened.
package tpm
