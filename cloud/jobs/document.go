package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/s3"
)

const placeholderMark = "${aws:iot:s3-presigned-url:"

// ErrBadPlaceholder marks a presigned-URL placeholder that does not end
// inside its JSON string, or holds no URL. It unwraps from an *Error of
// kind ErrInvalid.
var ErrBadPlaceholder = errors.New("jobs: malformed presigned-URL placeholder")

// stringValue is one string value (not an object key) of a JSON document:
// the raw token doc[start:end], quotes included, and its decoded text.
type stringValue struct {
	start, end int
	text       string
}

// stringValues lists the string values of a valid JSON document, in order.
// Object keys are skipped: placeholders are substituted in values only.
func stringValues(doc string) ([]stringValue, error) {
	var out []stringValue
	for i := 0; i < len(doc); i++ {
		if doc[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(doc) && doc[j] != '"' {
			if doc[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(doc) {
			return nil, errf(ErrInvalid, "The job document has an unterminated string at byte %d", i)
		}
		end := j + 1
		k := end
		for k < len(doc) && strings.IndexByte(" \t\r\n", doc[k]) >= 0 {
			k++
		}
		if k < len(doc) && doc[k] == ':' { // an object key
			i = j
			continue
		}
		if mayHavePlaceholder(doc[i:end]) {
			var text string
			if err := json.Unmarshal([]byte(doc[i:end]), &text); err != nil {
				return nil, errf(ErrInvalid, "The job document has an invalid string at byte %d: %v", i, err)
			}
			out = append(out, stringValue{i, end, text})
		}
		i = j
	}
	return out, nil
}

// expandPlaceholders replaces each ${aws:iot:s3-presigned-url:URL} in a
// string value by url(URL). A placeholder must end ("}") in the same
// string and hold a URL; otherwise the error names it.
func expandPlaceholders(text string, url func(string) (string, error)) (string, error) {
	var b strings.Builder
	rest := text
	for {
		i := strings.Index(rest, placeholderMark)
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		b.WriteString(rest[:i])
		body := rest[i+len(placeholderMark):]
		n := strings.IndexByte(body, '}')
		if n < 0 {
			return "", &Error{Kind: ErrInvalid, Msg: fmt.Sprintf("The presigned-URL placeholder %q has no closing } inside its JSON string",
				truncate(rest[i:], 200)), cause: ErrBadPlaceholder}
		}
		if n == 0 {
			return "", &Error{Kind: ErrInvalid, Msg: fmt.Sprintf("The presigned-URL placeholder %q has no URL", placeholderMark+"}"),
				cause: ErrBadPlaceholder}
		}
		u, err := url(body[:n])
		if err != nil {
			return "", err
		}
		b.WriteString(u)
		rest = body[n+1:]
	}
}

// mayHavePlaceholder reports whether raw JSON text may hold a placeholder:
// it has "${", or an escape that may spell it.
func mayHavePlaceholder(raw string) bool {
	return strings.Contains(raw, "${") || strings.Contains(raw, `\u`)
}

// Placeholders returns the S3 URLs of a valid JSON document's presigned-URL
// placeholders, in order. A placeholder that does not end inside its JSON
// string, or that holds no URL, is an error wrapping ErrBadPlaceholder.
func Placeholders(doc string) ([]string, error) {
	if !mayHavePlaceholder(doc) {
		return nil, nil
	}
	vals, err := stringValues(doc)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range vals {
		if _, err := expandPlaceholders(v.text, func(u string) (string, error) { out = append(out, u); return "", nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// substitute rewrites doc's placeholders with url(URL), leaving every other
// byte of the document as it was.
func substitute(doc string, url func(string) (string, error)) (string, error) {
	vals, err := stringValues(doc)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	last := 0
	for _, v := range vals {
		if !strings.Contains(v.text, placeholderMark) {
			continue
		}
		text, err := expandPlaceholders(v.text, url)
		if err != nil {
			return "", err
		}
		var enc bytes.Buffer
		je := json.NewEncoder(&enc)
		je.SetEscapeHTML(false) // a URL's & stays &
		if err := je.Encode(text); err != nil {
			return "", fmt.Errorf("encode substituted string: %w", err)
		}
		b.WriteString(doc[last:v.start])
		b.Write(bytes.TrimSuffix(enc.Bytes(), []byte("\n")))
		last = v.end
	}
	b.WriteString(doc[last:])
	return b.String(), nil
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
	urls, err := Placeholders(in.Document)
	if err != nil {
		return err
	}
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
	if !mayHavePlaceholder(j.Document) {
		return json.RawMessage(j.Document), nil
	}
	expires := time.Duration(DefaultPresignExpiry) * time.Second
	if j.PresignedURLConfig != nil && j.PresignedURLConfig.ExpiresInSec > 0 {
		expires = time.Duration(j.PresignedURLConfig.ExpiresInSec) * time.Second
	}
	out, err := substitute(j.Document, func(raw string) (string, error) {
		bucket, key, err := s3.ParseObjectURL(raw)
		if err != nil {
			return "", fmt.Errorf("placeholder URL %s: %w", truncate(raw, 200), err)
		}
		if s.o.Files == nil {
			return "", fmt.Errorf("placeholder URL %s: no object store", truncate(raw, 200))
		}
		return s.o.Files.PresignGet(bucket, key, expires)
	})
	if err != nil {
		return nil, fmt.Errorf("job %s: device document: %w", j.JobID, err)
	}
	return json.RawMessage(out), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
