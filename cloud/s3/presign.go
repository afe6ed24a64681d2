package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PresignAccessKey is the access key id in the credential of the URLs the
// store presigns; URLs with another one (e.g. from `aws s3 presign`) are
// checked for expiry only.
const PresignAccessKey = "IOTSIMPRESIGN"

// Presign limits, as S3's (one second to seven days).
const (
	MinPresignExpiry = time.Second
	MaxPresignExpiry = 7 * 24 * time.Hour
)

const amzDate = "20060102T150405Z"

// Presign errors; the handler answers both with 403 AccessDenied.
var (
	ErrExpired      = errors.New("s3: request has expired")
	ErrBadSignature = errors.New("s3: signature does not match")
)

// escapeKey percent-encodes a key for a URL path, keeping its slashes.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func (s *Store) signature(bucket, key, date, expires string) string {
	m := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(m, "GET\n%s\n%s\n%s\n%s", bucket, key, date, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// PresignGet returns a URL that GETs bucket/key until expires from now.
// The object need not exist yet.
func (s *Store) PresignGet(bucket, key string, expires time.Duration) (string, error) {
	if !ValidBucketName(bucket) || !validKey(key) {
		return "", fmt.Errorf("presign %s/%s: %w: bad bucket name or key", bucket, key, ErrInvalid)
	}
	if expires < MinPresignExpiry || expires > MaxPresignExpiry {
		return "", fmt.Errorf("presign %s/%s: %w: expiry %v is outside 1s-7d", bucket, key, ErrInvalid, expires)
	}
	now := s.o.Now().UTC()
	date := now.Format(amzDate)
	exp := strconv.Itoa(int(expires / time.Second))
	q := "X-Amz-Algorithm=AWS4-HMAC-SHA256" +
		"&X-Amz-Credential=" + url.QueryEscape(PresignAccessKey+"/"+now.Format("20060102")+"/"+s.o.Region+"/s3/aws4_request") +
		"&X-Amz-Date=" + date +
		"&X-Amz-Expires=" + exp +
		"&X-Amz-SignedHeaders=host" +
		"&X-Amz-Signature=" + s.signature(bucket, key, date, exp)
	return strings.TrimSuffix(s.o.BaseURL, "/") + "/" + bucket + "/" + escapeKey(key) + "?" + q, nil
}

// isPresigned reports whether the query carries a presigned signature.
func isPresigned(q url.Values) bool {
	return q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential")
}

// checkPresigned verifies a presigned request for bucket/key at now: S3
// checks expiry when a request starts.
func (s *Store) checkPresigned(q url.Values, bucket, key string, now time.Time) error {
	date, exp := q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")
	t, err := time.Parse(amzDate, date)
	if err != nil {
		return fmt.Errorf("%w: X-Amz-Date %q is not yyyymmddThhmmssZ", ErrBadSignature, date)
	}
	n, err := strconv.Atoi(exp)
	if err != nil || n < 1 || n > int(MaxPresignExpiry/time.Second) {
		return fmt.Errorf("%w: X-Amz-Expires must be 1-604800", ErrBadSignature)
	}
	cred := q.Get("X-Amz-Credential")
	if ak, _, _ := strings.Cut(cred, "/"); ak == PresignAccessKey {
		want := s.signature(bucket, key, date, exp)
		if !hmac.Equal([]byte(want), []byte(q.Get("X-Amz-Signature"))) {
			return ErrBadSignature
		}
	}
	if now.Before(t.Add(-15 * time.Minute)) {
		return fmt.Errorf("%w: X-Amz-Date is in the future", ErrBadSignature)
	}
	if !now.Before(t.Add(time.Duration(n) * time.Second)) {
		return ErrExpired
	}
	return nil
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
