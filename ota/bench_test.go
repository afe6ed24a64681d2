package ota

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// BenchmarkParseDocument parses and checks a signed "ota" job document as
// the agent receives it (presigned URL, minisign signature).
func BenchmarkParseDocument(b *testing.B) {
	_, sec := keyPair()
	data := fakeBinary(deviceMachine(), "2.0.0", 1024)
	sum := sha256.Sum256(data)
	sig := sign(b, sec, data, "2.0.0")
	doc := []byte(`{"operation":"ota","version":"2.0.0","file":{"url":"https://files.example.com/iotsim-artifacts/iotagent-2.0.0?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=` +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `","size":1088,"sha256":"` + hex.EncodeToString(sum[:]) +
		`","signature":` + jsonString(sig) + `,"arch":"arm64"}}`)
	if _, err := ParseDocument(doc, []string{"files.example.com"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDocument(doc, []string{"files.example.com"}); err != nil {
			b.Fatal(err)
		}
	}
}
