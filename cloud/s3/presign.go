package s3

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/sigv4"
)

// Presign limits, as S3's (one second to seven days).
const (
	MinPresignExpiry = time.Second
	MaxPresignExpiry = sigv4.MaxPresignExpiry
)

// Authentication errors of presigned URLs; the handler answers 403.
var (
	ErrExpired      = errors.New("s3: request has expired")
	ErrBadSignature = errors.New("s3: signature does not match")
)

// noAuthKey signs presigned URLs when the store has no credentials
// (Options.NoAuth): nothing verifies them then but their expiry.
var noAuthKey = sigv4.Credentials{AccessKeyID: "IOTSIMNOAUTH", SecretAccessKey: "none"}

// escapeKey percent-encodes a key for a URL path, keeping its slashes.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// PresignGet returns a URL that GETs bucket/key until expires from now,
// SigV4-presigned with the store's credentials as `aws s3 presign` would
// make it. The object need not exist yet.
func (s *Store) PresignGet(bucket, key string, expires time.Duration) (string, error) {
	if !ValidBucketName(bucket) || !validKey(key) {
		return "", fmt.Errorf("presign %s/%s: %w: bad bucket name or key", bucket, key, ErrInvalid)
	}
	if expires < MinPresignExpiry || expires > MaxPresignExpiry {
		return "", fmt.Errorf("presign %s/%s: %w: expiry %v is outside 1s-7d", bucket, key, ErrInvalid, expires)
	}
	creds := noAuthKey
	if s.o.Credentials != nil {
		creds = *s.o.Credentials
	}
	u := strings.TrimSuffix(s.o.BaseURL, "/") + "/" + bucket + "/" + escapeKey(key)
	signed, err := sigv4.Presign(http.MethodGet, u, creds, s.o.Region, "s3", s.o.Now(), expires)
	if err != nil {
		return "", fmt.Errorf("presign %s/%s: %w: %v", bucket, key, ErrInvalid, err)
	}
	return signed, nil
}

// ParseObjectURL splits an S3 object URL into bucket and key. It accepts
// s3://BUCKET/KEY, path-style https://s3[.REGION|-REGION].amazonaws.com/BUCKET/KEY,
// virtual-hosted https://BUCKET.s3[.REGION].amazonaws.com/KEY, and a URL
// of iotsim's own store (any host, path /s3/BUCKET/KEY).
func ParseObjectURL(raw string) (bucket, key string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("s3 url %q: %w: %v", raw, ErrInvalid, err)
	}
	path := strings.TrimPrefix(u.Path, "/")
	host := strings.ToLower(u.Hostname())
	switch {
	case u.Scheme == "s3":
		bucket, key = host, path
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", fmt.Errorf("s3 url %q: %w: scheme must be s3, https or http", raw, ErrInvalid)
	case strings.HasSuffix(host, ".amazonaws.com"):
		h := strings.TrimSuffix(host, ".amazonaws.com")
		if i := strings.Index(h, ".s3"); i > 0 && (h[i+3:] == "" || h[i+3] == '.' || h[i+3] == '-') {
			bucket, key = h[:i], path // virtual-hosted
		} else if h == "s3" || strings.HasPrefix(h, "s3.") || strings.HasPrefix(h, "s3-") {
			bucket, key, _ = strings.Cut(path, "/")
		} else {
			return "", "", fmt.Errorf("s3 url %q: %w: not an S3 host", raw, ErrInvalid)
		}
	case strings.HasPrefix(path, "s3/"):
		bucket, key, _ = strings.Cut(strings.TrimPrefix(path, "s3/"), "/")
	default:
		return "", "", fmt.Errorf("s3 url %q: %w: not an S3 object URL", raw, ErrInvalid)
	}
	if !ValidBucketName(bucket) || !validKey(key) {
		return "", "", fmt.Errorf("s3 url %q: %w: no valid bucket and key", raw, ErrInvalid)
	}
	return bucket, key, nil
}
