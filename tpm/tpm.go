package tpm

import (
	"crypto"
	"errors"
)

// KeyStore holds the device's private key and hands out a crypto.Signer; the
// key never leaves it through this API.
//
// Implementations are safe for concurrent use, and so are the signers they
// return (a TPM-backed signer serialises access to the TPM itself). Close is
// idempotent; after Close, Signer fails with ErrClosed, and signers already
// handed out may fail too.
type KeyStore interface {
	// Signer returns a signer for the device key. It fails with an error
	// wrapping ErrNoKey when the store holds no key yet.
	Signer() (crypto.Signer, error)
	Close() error
}

// Generator is implemented by key stores that can create the device key
// (FileStore and TPMStore). Generate refuses to replace an
// existing key with an error wrapping ErrKeyExists.
type Generator interface {
	Generate() (crypto.Signer, error)
}

var (
	// ErrUnsafePermissions means the key file or its directory can be read
	// or written by users other than its owner. The error's message says
	// which chmod fixes it.
	ErrUnsafePermissions = errors.New("unsafe permissions on the private key")

	// ErrNoKey means the store holds no key yet: generate one (and provision
	// a certificate for it) or point the configuration at the right file.
	ErrNoKey = errors.New("no private key")

	// ErrKeyExists means Generate was asked to create a key where one
	// already exists; the existing key is never replaced.
	ErrKeyExists = errors.New("private key already exists")

	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("key store closed")

	// ErrNoTPM means there is no TPM to talk to: the device does not exist,
	// or nothing listens at the software TPM's address. The error's message
	// says what to check.
	ErrNoTPM = errors.New("no TPM")
)
