// Package sigv4 signs and verifies AWS Signature Version 4 requests, as
// iotsim's REST API (cloud/api) and its S3 store (cloud/s3) need them: the
// Authorization header form and the presigned query form, with S3's
// canonical path (the path as sent) and every other service's (encoded once
// more). Verification errors wrap one of the sentinels below so that each
// service answers in its own error shape.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// Payload hash values that stand for the body (S3).
const (
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	streamingPrefix = "STREAMING-"
)

const (
	amzDateFmt   = "20060102T150405Z"
	scopeDateFmt = "20060102"
	// MaxPresignExpiry is the longest X-Amz-Expires (seven days).
	MaxPresignExpiry = 7 * 24 * time.Hour
	// MaxSkew is the clock skew allowed between X-Amz-Date and now for a
	// header-signed request.
	MaxSkew = 15 * time.Minute
)

// Credentials are an access key pair.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, if set, is sent as X-Amz-Security-Token. The verifier
	// does not check it.
	SessionToken string
}

// Verification failures. Each service maps them to its own error codes.
var (
	ErrMalformed  = errors.New("sigv4: malformed signature")
	ErrUnknownKey = errors.New("sigv4: unknown access key id")
	ErrScope      = errors.New("sigv4: wrong credential scope")
	ErrSkew       = errors.New("sigv4: request time too skewed")
	ErrExpired    = errors.New("sigv4: presigned request expired")
	ErrMismatch   = errors.New("sigv4: signature does not match")
)

// Error is a verification failure: Kind is one of the sentinels, Message
// says why in AWS's words.
type Error struct {
	Kind    error
	Message string
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Auth is a parsed signature, from the Authorization header or the query.
type Auth struct {
	AccessKeyID   string
	Date          string // yyyymmdd from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lowercase, as listed
	Signature     string   // 64 lowercase hex digits
	// Presigned is set for the query form; AmzDate and Expires come from
	// the query then.
	Presigned bool
	AmzDate   string
	Expires   time.Duration
}

// Scope is the credential scope "date/region/service/aws4_request".
func (a *Auth) Scope() string { return a.Date + "/" + a.Region + "/" + a.Service + "/aws4_request" }

// IsPresigned reports whether q carries a presigned signature.
func IsPresigned(q url.Values) bool {
	return q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") || q.Has("X-Amz-Algorithm")
}

// Parse returns r's signature: nil, nil when r carries none.
func Parse(r *http.Request) (*Auth, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return ParseHeader(h)
	}
	q := r.URL.Query()
	if !IsPresigned(q) {
		return nil, nil
	}
	return ParseQuery(q)
}

// ParseHeader parses "AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/
// service/aws4_request, SignedHeaders=h1;h2, Signature=hex".
func ParseHeader(h string) (*Auth, error) {
	algo, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || algo != Algorithm {
		return nil, fail(ErrMalformed, "Authorization header: algorithm must be %s", Algorithm)
	}
	var a Auth
	var seen [3]bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fail(ErrMalformed, "Authorization header: %q is not key=value", truncate(part, 40))
		}
		var idx int
		var err error
		switch k {
		case "Credential":
			idx, err = 0, a.setCredential(v)
		case "SignedHeaders":
			idx, err = 1, a.setSignedHeaders(v)
		case "Signature":
			idx, err = 2, a.setSignature(v)
		default:
			return nil, fail(ErrMalformed, "Authorization header: unknown key %q", truncate(k, 40))
		}
		if err != nil {
			return nil, fail(ErrMalformed, "Authorization header: %v", err)
		}
		if seen[idx] {
			return nil, fail(ErrMalformed, "Authorization header: %s given twice", k)
		}
		seen[idx] = true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return nil, fail(ErrMalformed, "Authorization header: Credential, SignedHeaders and Signature are required")
	}
	return &a, nil
}

// ParseQuery parses a presigned request's X-Amz-* query parameters.
func ParseQuery(q url.Values) (*Auth, error) {
	a := Auth{Presigned: true}
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if len(q[k]) != 1 {
			return nil, fail(ErrMalformed, "Query-string authentication requires exactly one %s parameter", k)
		}
	}
	if q.Get("X-Amz-Algorithm") != Algorithm {
		return nil, fail(ErrMalformed, "X-Amz-Algorithm only supports \"%s\"", Algorithm)
	}
	if err := a.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, fail(ErrMalformed, "X-Amz-Credential: %v", err)
	}
	if err := a.setSignedHeaders(q.Get("X-Amz-SignedHeaders")); err != nil {
		return nil, fail(ErrMalformed, "X-Amz-SignedHeaders: %v", err)
	}
	if err := a.setSignature(q.Get("X-Amz-Signature")); err != nil {
		return nil, fail(ErrMalformed, "X-Amz-Signature: %v", err)
	}
	a.AmzDate = q.Get("X-Amz-Date")
	if _, err := time.Parse(amzDateFmt, a.AmzDate); err != nil {
		return nil, fail(ErrMalformed, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	n, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || n < 1 || n > int(MaxPresignExpiry/time.Second) {
		return nil, fail(ErrMalformed, "X-Amz-Expires must be between 1 and 604800 seconds")
	}
	a.Expires = time.Duration(n) * time.Second
	return &a, nil
}

func (a *Auth) setCredential(v string) error {
	f := strings.Split(v, "/")
	if len(f) != 5 || f[4] != "aws4_request" {
		return errors.New("the Credential must be AKID/date/region/service/aws4_request")
	}
	for _, x := range f[:4] {
		if x == "" {
			return errors.New("the Credential has an empty field")
		}
	}
	if _, err := time.Parse(scopeDateFmt, f[1]); err != nil || len(f[1]) != 8 {
		return errors.New("the Credential date must be yyyymmdd")
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
	return nil
}

func (a *Auth) setSignedHeaders(v string) error {
	a.SignedHeaders = nil
	for name := range strings.SplitSeq(v, ";") {
		if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t:") {
			return errors.New("the SignedHeaders must be lowercase names separated by ;")
		}
		a.SignedHeaders = append(a.SignedHeaders, name)
	}
	return nil
}

func (a *Auth) setSignature(v string) error {
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return errors.New("the Signature must be 64 lowercase hex digits")
	}
	a.Signature = v
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Check says how to verify a request.
type Check struct {
	Credentials Credentials
	// Region, if not empty, is the only region the scope may name.
	Region string
	// Services, if not empty, are the signing names the scope may name.
	Services []string
	Now      time.Time
	// S3 selects S3's canonical path (as sent, not encoded again).
	S3 bool
	// PayloadHash is the hex SHA-256 of the body, or for S3 the
	// X-Amz-Content-Sha256 value (UNSIGNED-PAYLOAD, STREAMING-...).
	// Presigned requests always use UNSIGNED-PAYLOAD for S3.
	PayloadHash string
}

// Verify checks a, parsed from r, against c.
func Verify(r *http.Request, a *Auth, c Check) error {
	if a.AccessKeyID != c.Credentials.AccessKeyID {
		return fail(ErrUnknownKey, "The access key id %q is not iotsim's.", truncate(a.AccessKeyID, 40))
	}
	if len(c.Services) > 0 && !slices.Contains(c.Services, a.Service) {
		return fail(ErrScope, "Credential should be scoped to correct service: '%s'.", a.Service)
	}
	if c.Region != "" && a.Region != c.Region {
		return fail(ErrScope, "Credential should be scoped to a valid region, not '%s'.", a.Region)
	}
	if !slices.Contains(a.SignedHeaders, "host") {
		return fail(ErrMalformed, "The host header must be signed.")
	}
	amzDate, query := a.AmzDate, r.URL.RawQuery
	if !a.Presigned {
		amzDate = r.Header.Get("X-Amz-Date")
	} else {
		query = withoutSignature(query)
	}
	t, err := time.Parse(amzDateFmt, amzDate)
	if err != nil {
		return fail(ErrMalformed, "The request must carry an X-Amz-Date of the form yyyymmddThhmmssZ.")
	}
	if t.Format(scopeDateFmt) != a.Date {
		return fail(ErrScope, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
	}
	if a.Presigned {
		if c.Now.Before(t.Add(-MaxSkew)) {
			return fail(ErrSkew, "X-Amz-Date %s is in the future.", amzDate)
		}
		if !c.Now.Before(t.Add(a.Expires)) {
			return fail(ErrExpired, "Request has expired")
		}
	} else if d := c.Now.Sub(t); d > MaxSkew || d < -MaxSkew {
		return fail(ErrSkew, "Signature expired: %s is now earlier than %s (%s - %s.)",
			amzDate, c.Now.Add(-MaxSkew).UTC().Format(amzDateFmt), c.Now.UTC().Format(amzDateFmt), MaxSkew)
	}
	hash := c.PayloadHash
	if a.Presigned && c.S3 {
		hash = UnsignedPayload
	}
	path := requestPath(r)
	if !c.S3 {
		path = uriEncode(path, false)
	}
	want := signature(c.Credentials.SecretAccessKey, a, amzDate,
		canonicalRequest(r.Method, path, query, a.SignedHeaders, serverHeader(r), hash))
	if !hmac.Equal([]byte(want), []byte(a.Signature)) {
		return fail(ErrMismatch, "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	return nil
}

// withoutSignature drops X-Amz-Signature from a raw query.
func withoutSignature(raw string) string {
	var keep []string
	for part := range strings.SplitSeq(raw, "&") {
		if k, _, _ := strings.Cut(part, "="); k != "X-Amz-Signature" {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, "&")
}

// requestPath is the path exactly as the client sent it.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// serverHeader reads a signed header of a received request.
func serverHeader(r *http.Request) func(string) string {
	return func(name string) string {
		switch name {
		case "host":
			return r.Host
		case "content-length":
			if v := r.Header.Get("Content-Length"); v != "" {
				return v
			}
			if r.ContentLength >= 0 {
				return strconv.FormatInt(r.ContentLength, 10)
			}
		}
		return strings.Join(r.Header.Values(name), ",")
	}
}

// PayloadHash is the hex SHA-256 of body.
func PayloadHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// canonicalRequest builds the SigV4 canonical request; path is the
// canonical URI, already encoded as the service wants it.
func canonicalRequest(method, path, rawQuery string, signed []string, header func(string) string, bodyHash string) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(rawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(strings.Fields(header(name)), " "))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(bodyHash)
	return b.String()
}

func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if u, err := url.QueryUnescape(k); err == nil {
			k = u
		}
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		pairs = append(pairs, kv{uriEncode(k, true), uriEncode(v, true)})
	}
	slices.SortFunc(pairs, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// uriEncode percent-encodes every byte but RFC 3986's unreserved characters
// (and "/" unless encodeSlash).
func uriEncode(s string, encodeSlash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// signature computes the hex signature of a canonical request.
func signature(secret string, a *Auth, amzDate, canonical string) string {
	h := sha256.Sum256([]byte(canonical))
	sts := Algorithm + "\n" + amzDate + "\n" + a.Scope() + "\n" + hex.EncodeToString(h[:])
	k := hmacSHA256([]byte("AWS4"+secret), a.Date)
	k = hmacSHA256(k, a.Region)
	k = hmacSHA256(k, a.Service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, sts))
}

// Sign adds SigV4 headers (X-Amz-Date, X-Amz-Security-Token, for s3
// X-Amz-Content-Sha256, and Authorization) to an outgoing request whose
// body hashes to payloadHash (PayloadHash, or UnsignedPayload for s3).
func Sign(req *http.Request, payloadHash string, creds Credentials, region, service string, t time.Time) {
	t = t.UTC()
	amzDate := t.Format(amzDateFmt)
	req.Header.Set("X-Amz-Date", amzDate)
	if creds.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	s3 := service == "s3"
	if s3 {
		req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	signed := []string{"host", "x-amz-date"}
	for _, h := range []string{"Content-Type", "X-Amz-Security-Token", "X-Amz-Content-Sha256"} {
		if req.Header.Get(h) != "" {
			signed = append(signed, strings.ToLower(h))
		}
	}
	slices.Sort(signed)
	header := func(name string) string {
		if name == "host" {
			return host
		}
		return strings.Join(req.Header.Values(name), ",")
	}
	a := &Auth{AccessKeyID: creds.AccessKeyID, Date: t.Format(scopeDateFmt), Region: region, Service: service, SignedHeaders: signed}
	path := req.URL.EscapedPath()
	if !s3 {
		path = uriEncode(path, false)
	}
	a.Signature = signature(creds.SecretAccessKey, a, amzDate,
		canonicalRequest(req.Method, path, req.URL.RawQuery, signed, header, payloadHash))
	req.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		Algorithm, a.AccessKeyID, a.Scope(), strings.Join(signed, ";"), a.Signature))
}

// Presign returns rawURL with a query signature valid for expires from t,
// for method, as `aws s3 presign` makes them (host the only signed header;
// for s3 the payload is UNSIGNED-PAYLOAD, otherwise the empty body).
func Presign(method, rawURL string, creds Credentials, region, service string, t time.Time, expires time.Duration) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", rawURL, err)
	}
	if expires < time.Second || expires > MaxPresignExpiry {
		return "", fmt.Errorf("presign %s: expiry %v is outside 1s-7d", rawURL, expires)
	}
	t = t.UTC()
	a := &Auth{AccessKeyID: creds.AccessKeyID, Date: t.Format(scopeDateFmt), Region: region, Service: service,
		SignedHeaders: []string{"host"}, Presigned: true, AmzDate: t.Format(amzDateFmt), Expires: expires}
	q := "X-Amz-Algorithm=" + Algorithm +
		"&X-Amz-Credential=" + url.QueryEscape(a.AccessKeyID+"/"+a.Scope()) +
		"&X-Amz-Date=" + a.AmzDate +
		"&X-Amz-Expires=" + strconv.Itoa(int(expires/time.Second)) +
		"&X-Amz-SignedHeaders=host"
	if creds.SessionToken != "" {
		q += "&X-Amz-Security-Token=" + url.QueryEscape(creds.SessionToken)
	}
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	path, hash := u.EscapedPath(), UnsignedPayload
	if service != "s3" {
		path, hash = uriEncode(path, false), PayloadHash(nil)
	}
	sig := signature(creds.SecretAccessKey, a, a.AmzDate,
		canonicalRequest(method, path, q, a.SignedHeaders, func(string) string { return u.Host }, hash))
	u.RawQuery = q + "&X-Amz-Signature=" + sig
	return u.String(), nil
}
