package ota

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
)

// The minisign secret key file layout (158 bytes before base64):
// sig_alg "Ed", kdf_alg ("Sc" or 0 0), chk_alg "B2", salt[32], ops[8],
// mem[8], then keynum[8] sk[64] chk[32] (encrypted with scrypt when
// kdf_alg is "Sc").
const secretKeySize = 158

var (
	algEd = [2]byte{'E', 'd'}
	algB2 = [2]byte{'B', '2'}
)

// GenerateKey makes a minisign key pair and returns the public key file
// (.pub) and the secret key file (.key) in the minisign tool's formats.
// With an empty password the secret key is stored unencrypted (as
// `minisign -G -W` does); otherwise it is encrypted with scrypt (as
// `minisign -G` does; this costs about 1 GiB of memory and a few seconds).
func GenerateKey(random io.Reader, password string) (pub, sec []byte, err error) {
	if random == nil {
		random = rand.Reader
	}
	if password != "" {
		pk, sk, err := minisign.GenerateKey(random)
		if err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
		sec, err := minisign.EncryptKey(password, sk)
		if err != nil {
			return nil, nil, fmt.Errorf("encrypt key: %w", err)
		}
		return publicKeyFile(pk), append(sec, '\n'), nil
	}
	edPub, edPriv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	var idb [8]byte
	if _, err := io.ReadFull(random, idb[:]); err != nil {
		return nil, nil, fmt.Errorf("generate key id: %w", err)
	}
	id := binary.LittleEndian.Uint64(idb[:])

	var raw [2 + 8 + ed25519.PublicKeySize]byte
	copy(raw[:2], algEd[:])
	binary.LittleEndian.PutUint64(raw[2:10], id)
	copy(raw[10:], edPub)
	var pk minisign.PublicKey
	if err := pk.UnmarshalText([]byte(base64.StdEncoding.EncodeToString(raw[:]))); err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}

	var s [secretKeySize]byte
	copy(s[0:2], algEd[:])
	// s[2:4] kdf_alg 0 0: not encrypted; salt, ops and mem stay zero
	copy(s[4:6], algB2[:])
	copy(s[54:62], idb[:])
	copy(s[62:126], edPriv)
	chk := secretChecksum(idb[:], edPriv)
	copy(s[126:158], chk[:])
	sec = []byte("untrusted comment: minisign secret key " + keyIDString(id) + "\n" +
		base64.StdEncoding.EncodeToString(s[:]) + "\n")
	return publicKeyFile(pk), sec, nil
}

func keyIDString(id uint64) string { return strings.ToUpper(strconv.FormatUint(id, 16)) }

func publicKeyFile(pk minisign.PublicKey) []byte {
	return []byte("untrusted comment: minisign public key " + keyIDString(pk.ID()) + "\n" + pk.String() + "\n")
}

func secretChecksum(keynum, sk []byte) [32]byte {
	h, _ := blake2b.New256(nil)
	h.Write(algEd[:])
	h.Write(keynum)
	h.Write(sk)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// signer makes Ed25519 signatures with a minisign key.
type signer struct {
	id uint64
	ed func(msg []byte) ([]byte, error) // plain Ed25519 over msg
}

// sign returns the .minisig text for a BLAKE2b-512 digest ("ED",
// prehashed) with trusted in its trusted comment.
func (s signer) sign(digest []byte, trusted string) ([]byte, error) {
	sig := minisign.Signature{
		Algorithm:        minisign.HashEdDSA,
		KeyID:            s.id,
		TrustedComment:   trusted,
		UntrustedComment: "signature from iotagent secret key",
	}
	fileSig, err := s.ed(digest)
	if err != nil {
		return nil, err
	}
	copy(sig.Signature[:], fileSig)
	commentSig, err := s.ed(append(sig.Signature[:], trusted...))
	if err != nil {
		return nil, err
	}
	copy(sig.CommentSignature[:], commentSig)
	return sig.MarshalText()
}

// loadSecretKey reads a minisign secret key file, encrypted or not.
func loadSecretKey(sec []byte, password string) (signer, error) {
	text := bytes.TrimSpace(sec)
	if i := bytes.IndexByte(text, '\n'); i >= 0 && bytes.HasPrefix(text, []byte("untrusted comment:")) {
		text = bytes.TrimSpace(text[i+1:])
	}
	raw, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil || len(raw) != secretKeySize || !bytes.Equal(raw[0:2], algEd[:]) || !bytes.Equal(raw[4:6], algB2[:]) {
		return signer{}, errors.New("load secret key: not a minisign secret key")
	}
	if raw[2] != 0 || raw[3] != 0 {
		sk, err := minisign.DecryptKey(password, sec)
		if err != nil {
			return signer{}, fmt.Errorf("load secret key: wrong password or damaged key: %w", err)
		}
		return encryptedSigner(sk), nil
	}
	keynum, sk := raw[54:62], raw[62:126]
	// minisign -W (0.11) leaves the checksum of an unencrypted key zero;
	// then check that the key is self-consistent instead.
	if zero := make([]byte, 32); bytes.Equal(raw[126:158], zero) {
		if !bytes.Equal(ed25519.NewKeyFromSeed(sk[:32]), sk) {
			return signer{}, errors.New("load secret key: damaged key")
		}
	} else if chk := secretChecksum(keynum, sk); !bytes.Equal(chk[:], raw[126:158]) {
		return signer{}, errors.New("load secret key: checksum mismatch")
	}
	priv := ed25519.PrivateKey(append([]byte(nil), sk...))
	return signer{id: binary.LittleEndian.Uint64(keynum), ed: func(msg []byte) ([]byte, error) {
		return ed25519.Sign(priv, msg), nil
	}}, nil
}

// encryptedSigner signs with a decrypted minisign.PrivateKey, which keeps
// its key bytes to itself: signing a message unhashed (crypto.Hash(0))
// yields the plain Ed25519 signature of it.
func encryptedSigner(sk minisign.PrivateKey) signer {
	return signer{id: sk.ID(), ed: func(msg []byte) ([]byte, error) {
		text, err := sk.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			return nil, err
		}
		var s minisign.Signature
		if err := s.UnmarshalText(text); err != nil {
			return nil, err
		}
		return s.Signature[:], nil
	}}
}

// Sign signs the artifact read from r with the minisign secret key file
// sec and returns the .minisig text, in the format of `minisign -S`
// (prehashed Ed25519, "ED"), with name, meta's version and arch in the
// trusted comment (see Meta), which devices require.
func Sign(sec []byte, password string, r io.Reader, name string, now time.Time, meta Meta) ([]byte, error) {
	s, err := loadSecretKey(sec, password)
	if err != nil {
		return nil, err
	}
	return signWith(s, r, name, now, meta)
}

func signWith(s signer, r io.Reader, name string, now time.Time, meta Meta) ([]byte, error) {
	if err := meta.Check(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	h, _ := blake2b.New512(nil)
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("sign: read: %w", err)
	}
	sig, err := s.sign(h.Sum(nil), meta.trustedComment(name, now))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !bytes.HasSuffix(sig, []byte("\n")) {
		sig = append(sig, '\n')
	}
	return sig, nil
}
