package jobs

import (
	"encoding/json"
	"testing"
)

// startNextAccepted is a start-next accepted answer carrying a
// download-file job document, as the runner receives it.
const startNextAccepted = `{"clientToken":"0123456789abcdef","timestamp":1767225600,"execution":{"jobId":"fw-config-2026-01-01","thingName":"chocolate-box-1","status":"IN_PROGRESS","queuedAt":1767225500,"startedAt":1767225600,"lastUpdatedAt":1767225600,"versionNumber":2,"executionNumber":1,"jobDocument":{"operation":"download-file","url":"https://files.example.com/iotsim-artifacts/config.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123456789abcdef","path":"/var/lib/iotagent/files/config.json","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}}`

// BenchmarkParseExecution decodes a start-next answer and reads its job
// document's operation: what the runner does for every job it is given.
func BenchmarkParseExecution(b *testing.B) {
	raw := []byte(startNextAccepted)
	b.ReportAllocs()
	for b.Loop() {
		var r response
		if err := json.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
		if r.Execution == nil {
			b.Fatal("no execution")
		}
		op, err := parseOperation(r.Execution.JobDocument)
		if err != nil || op != "download-file" {
			b.Fatalf("operation %q, %v", op, err)
		}
	}
}

// BenchmarkParseOperation reads only the operation of a job document.
func BenchmarkParseOperation(b *testing.B) {
	var r response
	if err := json.Unmarshal([]byte(startNextAccepted), &r); err != nil {
		b.Fatal(err)
	}
	doc := r.Execution.JobDocument
	b.ReportAllocs()
	for b.Loop() {
		if op, err := parseOperation(doc); err != nil || op != "download-file" {
			b.Fatalf("operation %q, %v", op, err)
		}
	}
}
