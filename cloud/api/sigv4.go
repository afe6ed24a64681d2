package api

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

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateFmt   = "20060102T150405Z"
	scopeDateFmt = "20060102"
)

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	AccessKeyID   string
	Date          string // yyyymmdd from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lowercase, as listed
	Signature     string   // 64 lowercase hex digits
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request,
// SignedHeaders=h1;h2, Signature=hex".
func parseAuthorization(h string) (*authorization, error) {
	algo, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || algo != sigAlgorithm {
		return nil, errors.New("authorization header: algorithm must be " + sigAlgorithm)
	}
	var a authorization
	var seen [3]bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("authorization header: %q is not key=value", truncate(part, 40))
		}
		var idx int
		switch k {
		case "Credential":
			idx = 0
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return nil, errors.New("authorization header: Credential must be AKID/date/region/service/aws4_request")
			}
			for _, x := range f[:4] {
				if x == "" {
					return nil, errors.New("authorization header: Credential has an empty field")
				}
			}
			if _, err := time.Parse(scopeDateFmt, f[1]); err != nil || len(f[1]) != 8 {
				return nil, errors.New("authorization header: Credential date must be yyyymmdd")
			}
			a.AccessKeyID, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			idx = 1
			for name := range strings.SplitSeq(v, ";") {
				if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t:") {
					return nil, errors.New("authorization header: SignedHeaders must be lowercase names separated by ;")
				}
				a.SignedHeaders = append(a.SignedHeaders, name)
			}
		case "Signature":
			idx = 2
			if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
				return nil, errors.New("authorization header: Signature must be 64 lowercase hex digits")
			}
			a.Signature = v
		default:
			return nil, fmt.Errorf("authorization header: unknown key %q", truncate(k, 40))
		}
		if seen[idx] {
			return nil, fmt.Errorf("authorization header: %s given twice", k)
		}
		seen[idx] = true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return nil, errors.New("authorization header: Credential, SignedHeaders and Signature are required")
	}
	return &a, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func sigErr(code, format string, args ...any) *apiError {
	return errorf(http.StatusForbidden, code, format, args...)
}

// verify checks a's signature over r and body with creds. region, if not
// empty, is the only region the scope may name.
func verify(r *http.Request, body []byte, a *authorization, creds Credentials, region string, now time.Time, skew time.Duration) error {
	if a.AccessKeyID != creds.AccessKeyID {
		return sigErr("UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if family(a.Service) == "" {
		return sigErr("InvalidSignatureException", "Credential should be scoped to correct service: '%s'.", a.Service)
	}
	if region != "" && a.Region != region {
		return sigErr("InvalidSignatureException", "Credential should be scoped to a valid region, not '%s'.", a.Region)
	}
	if !slices.Contains(a.SignedHeaders, "host") {
		return sigErr("InvalidSignatureException", "The host header must be signed.")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFmt, amzDate)
	if err != nil {
		return sigErr("IncompleteSignatureException", "The request must carry an X-Amz-Date header of the form yyyymmddThhmmssZ.")
	}
	if t.Format(scopeDateFmt) != a.Date {
		return sigErr("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
	}
	if d := now.Sub(t); d > skew || d < -skew {
		return sigErr("InvalidSignatureException", "Signature expired: %s is now earlier than %s (%s - %s.)",
			amzDate, now.Add(-skew).UTC().Format(amzDateFmt), now.UTC().Format(amzDateFmt), skew)
	}
	want := signature(creds.SecretAccessKey, a, amzDate,
		canonicalRequest(r.Method, requestPath(r), r.URL.RawQuery, a.SignedHeaders, serverHeader(r), payloadHash(body)))
	if !hmac.Equal([]byte(want), []byte(a.Signature)) {
		return sigErr("InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return nil
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

func payloadHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// canonicalRequest builds the SigV4 canonical request of a non-S3 service:
// the escaped path is encoded once more.
func canonicalRequest(method, escapedPath, rawQuery string, signed []string, header func(string) string, bodyHash string) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	if escapedPath == "" {
		escapedPath = "/"
	}
	b.WriteString(uriEncode(escapedPath, false))
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
func signature(secret string, a *authorization, amzDate, canonical string) string {
	scope := a.Date + "/" + a.Region + "/" + a.Service + "/aws4_request"
	h := sha256.Sum256([]byte(canonical))
	sts := sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
	k := hmacSHA256([]byte("AWS4"+secret), a.Date)
	k = hmacSHA256(k, a.Region)
	k = hmacSHA256(k, a.Service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, sts))
}

// sign adds SigV4 headers (X-Amz-Date, X-Amz-Security-Token, Authorization)
// to an outgoing request whose body is body.
func sign(req *http.Request, body []byte, creds Credentials, region, service string, t time.Time) {
	t = t.UTC()
	amzDate := t.Format(amzDateFmt)
	req.Header.Set("X-Amz-Date", amzDate)
	if creds.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	signed := []string{"host", "x-amz-date"}
	if req.Header.Get("Content-Type") != "" {
		signed = append(signed, "content-type")
	}
	if creds.SessionToken != "" {
		signed = append(signed, "x-amz-security-token")
	}
	slices.Sort(signed)
	header := func(name string) string {
		if name == "host" {
			return host
		}
		return strings.Join(req.Header.Values(name), ",")
	}
	a := &authorization{AccessKeyID: creds.AccessKeyID, Date: t.Format(scopeDateFmt), Region: region, Service: service, SignedHeaders: signed}
	a.Signature = signature(creds.SecretAccessKey, a, amzDate,
		canonicalRequest(req.Method, req.URL.EscapedPath(), req.URL.RawQuery, signed, header, payloadHash(body)))
	req.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
		sigAlgorithm, a.AccessKeyID, a.Date, a.Region, a.Service, strings.Join(signed, ";"), a.Signature))
}
