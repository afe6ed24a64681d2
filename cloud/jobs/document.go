package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/s3"
)

// placeholderRE matches ${aws:iot:s3-presigned-url:URL} (control-plane-rest.md §4).
var placeholderRE = regexp.MustCompile(`\$\{aws:iot:s3-presigned-url:([^}]+)\}`)

const placeholderMark = "${aws:iot:s3-presigned-url:"

// Placeholders returns the S3 URLs of a document's presigned-URL
// placeholders, in order. A URL written with JSON's escaped slashes
// (https:\/\/...) is unescaped.
func Placeholders(doc string) []string {
	if !strings.Contains(doc, placeholderMark) {
		return nil
	}
	var out []string
	for _, m := range placeholderRE.FindAllStringSubmatch(doc, -1) {
		out = append(out, strings.ReplaceAll(m[1], `\/`, "/"))
	}
	return out
}

// ValidJobID reports whether id is 1-64 of [a-zA-Z0-9_-].
func ValidJobID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckDocument validates a job document: UTF-8 JSON (an object), at most
// MaxDocumentBytes.
func CheckDocument(doc string) error {
	if len(doc) > MaxDocumentBytes {
		return errf(ErrInvalid, "The job document is %d bytes; the limit is %d", len(doc), MaxDocumentBytes)
	}
	if !utf8.ValidString(doc) {
		return errf(ErrInvalid, "The job document is not valid UTF-8")
	}
	var v any
	d := json.NewDecoder(strings.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return errf(ErrInvalid, "The job document is not valid JSON: %v", err)
	}
	if d.More() {
		return errf(ErrInvalid, "The job document has data after its JSON value")
	}
	if _, ok := v.(map[string]any); !ok {
		return errf(ErrInvalid, "The job document must be a JSON object")
	}
	return nil
}

// validateCreate checks in, fills its defaults and resolves its
// documentSource.
func (s *Service) validateCreate(in *CreateJobInput) error {
	if !ValidJobID(in.JobID) {
		return errf(ErrInvalid, "1 validation error detected: Value '%s' at 'jobId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and have length 1-64", truncate(in.JobID, 80))
	}
	if len(in.Targets) == 0 {
		return errf(ErrInvalid, "1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null")
	}
	for _, t := range in.Targets {
		if t == "" || len(t) > 2048 {
			return errf(ErrInvalid, "Each target must be a thing or thing group ARN of at most 2048 characters")
		}
	}
	if len(in.Description) > MaxDescription || strings.IndexFunc(in.Description, func(r rune) bool { return unicode.Is(unicode.C, r) }) >= 0 {
		return errf(ErrInvalid, "The description must be at most %d characters without control characters", MaxDescription)
	}
	switch in.TargetSelection {
	case "":
		in.TargetSelection = Snapshot
	case Snapshot, Continuous:
	default:
		return errf(ErrInvalid, "targetSelection must be SNAPSHOT or CONTINUOUS, not %q", truncate(in.TargetSelection, 40))
	}
	if c := in.TimeoutConfig; c != nil && c.InProgressTimeoutInMinutes != 0 &&
		(c.InProgressTimeoutInMinutes < 1 || c.InProgressTimeoutInMinutes > MaxTimeoutMinutes) {
		return errf(ErrInvalid, "timeoutConfig.inProgressTimeoutInMinutes must be 1-%d", MaxTimeoutMinutes)
	}
	if c := in.PresignedURLConfig; c != nil {
		if c.ExpiresInSec == 0 {
			c.ExpiresInSec = DefaultPresignExpiry
		}
		if c.ExpiresInSec < MinPresignExpirySec || c.ExpiresInSec > MaxPresignExpirySec {
			return errf(ErrInvalid, "presignedUrlConfig.expiresInSec must be %d-%d", MinPresignExpirySec, MaxPresignExpirySec)
		}
	}
	switch {
	case in.Document != "" && in.DocumentSource != "":
		return errf(ErrInvalid, "Only one of document and documentSource may be given")
	case in.Document == "" && in.DocumentSource == "":
		return errf(ErrInvalid, "One of document and documentSource is required")
	case in.DocumentSource != "":
		if len(in.DocumentSource) > maxDocumentSourceBytes {
			return errf(ErrInvalid, "documentSource must be at most %d characters", maxDocumentSourceBytes)
		}
		bucket, key, err := s3.ParseObjectURL(in.DocumentSource)
		if err != nil {
			return errf(ErrInvalid, "documentSource %s is not an S3 object URL", truncate(in.DocumentSource, 200))
		}
		if s.o.Files == nil {
			return errf(ErrInvalid, "documentSource needs the object store, which this iotsim does not have")
		}
		b, err := s.o.Files.Get(bucket, key, MaxDocumentBytes)
		switch {
		case errors.Is(err, s3.ErrNoSuchKey), errors.Is(err, s3.ErrNoSuchBucket):
			return errf(ErrInvalid, "documentSource %s does not exist", in.DocumentSource)
		case errors.Is(err, s3.ErrTooLarge):
			return errf(ErrInvalid, "The job document at %s exceeds %d bytes", in.DocumentSource, MaxDocumentBytes)
		case err != nil:
			return err
		}
		in.Document = string(b)
	}
	if err := CheckDocument(in.Document); err != nil {
		return err
	}
	urls := Placeholders(in.Document)
	if len(urls) > 0 && in.PresignedURLConfig == nil {
		return errf(ErrInvalid, "The job document has presigned URL placeholders but no presignedUrlConfig")
	}
	if len(urls) > 0 && s.o.Files == nil {
		return errf(ErrInvalid, "Presigned URL placeholders need the object store, which this iotsim does not have")
	}
	for _, u := range urls {
		if _, _, err := s3.ParseObjectURL(u); err != nil {
			return errf(ErrInvalid, "The placeholder URL %s is not an S3 object URL", truncate(u, 200))
		}
	}
	return nil
}

// deviceDocument is the job document as sent to a device: every
// placeholder replaced by a fresh presigned URL.
func (s *Service) deviceDocument(j *Job) (json.RawMessage, error) {
	if !strings.Contains(j.Document, placeholderMark) {
		return json.RawMessage(j.Document), nil
	}
	expires := time.Duration(DefaultPresignExpiry) * time.Second
	if j.PresignedURLConfig != nil && j.PresignedURLConfig.ExpiresInSec > 0 {
		expires = time.Duration(j.PresignedURLConfig.ExpiresInSec) * time.Second
	}
	var firstErr error
	out := placeholderRE.ReplaceAllStringFunc(j.Document, func(m string) string {
		raw := strings.ReplaceAll(placeholderRE.FindStringSubmatch(m)[1], `\/`, "/")
		bucket, key, err := s3.ParseObjectURL(raw)
		var u string
		if err == nil && s.o.Files != nil {
			u, err = s.o.Files.PresignGet(bucket, key, expires)
		} else if err == nil {
			err = errors.New("no object store")
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return m
		}
		// The URL goes inside a JSON string: escape what JSON needs.
		b, _ := json.Marshal(u)
		b = bytes.ReplaceAll(b, []byte(`\u0026`), []byte("&"))
		return string(b[1 : len(b)-1])
	})
	if firstErr != nil {
		return nil, firstErr
	}
	return json.RawMessage(out), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
