package agent

import (
	"crypto"
	"encoding/pem"
)

// nextCertificate returns the DER of the first CERTIFICATE block in data
// and the rest, or nil when there is none.
func nextCertificate(data []byte) (der, rest []byte) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, nil
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, data
		}
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
