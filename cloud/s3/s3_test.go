package s3

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/sigv4"
)

func do(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// Requests are signed as the aws CLI signs them, unless presigned or
	// the test asks for "Authorization: none".
	switch {
	case req.Header.Get("Authorization") == "none":
		req.Header.Del("Authorization")
	case req.Header.Get("Authorization") == "" && !req.URL.Query().Has("X-Amz-Signature"):
		hash := req.Header.Get("X-Amz-Content-Sha256")
		if hash == "" {
			hash = sigv4.UnsignedPayload
		}
		sigv4.Sign(req, hash, testCreds, "us-east-1", "s3", testClockStart)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if err := xml.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q is not S3 XML: %v", b, err)
	}
	return e.Code
}

func TestPutGetRange(t *testing.T) {
	e := newTestEnv(t)
	data := []byte("0123456789abcdefghij") // 20 bytes
	resp, _ := do(t, http.MethodPut, e.srv.URL+"/s3/fwb/dir/agent%201.bin", bytes.NewReader(data), nil)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Fatalf("PUT: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	etag := resp.Header.Get("ETag")
	tests := []struct {
		name, rng, ifRange string
		status             int
		body, contentRange string
	}{
		{"whole", "", "", 200, string(data), ""},
		{"first bytes", "bytes=0-4", "", 206, "01234", "bytes 0-4/20"},
		{"open end", "bytes=15-", "", 206, "fghij", "bytes 15-19/20"},
		{"suffix", "bytes=-3", "", 206, "hij", "bytes 17-19/20"},
		{"suffix longer than object", "bytes=-50", "", 206, string(data), "bytes 0-19/20"},
		{"end clipped", "bytes=18-100", "", 206, "ij", "bytes 18-19/20"},
		{"past the end", "bytes=20-", "", 416, "", "bytes */20"},
		{"zero suffix", "bytes=-0", "", 416, "", "bytes */20"},
		{"multi-range ignored", "bytes=0-1,3-4", "", 200, string(data), ""},
		{"malformed ignored", "bytes=x-y", "", 200, string(data), ""},
		{"inverted ignored", "bytes=5-2", "", 200, string(data), ""},
		{"if-range matches", "bytes=0-1", etag, 206, "01", "bytes 0-1/20"},
		{"if-range stale", "bytes=0-1", `"other"`, 200, string(data), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.rng != "" {
				h["Range"] = tc.rng
			}
			if tc.ifRange != "" {
				h["If-Range"] = tc.ifRange
			}
			resp, b := do(t, http.MethodGet, e.srv.URL+"/s3/fwb/dir/agent%201.bin", nil, h)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, b)
			}
			if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tc.contentRange)
			}
			if tc.status == 416 {
				if c := errCode(t, b); c != "InvalidRange" {
					t.Errorf("code %s", c)
				}
				return
			}
			if string(b) != tc.body {
				t.Errorf("body %q, want %q", b, tc.body)
			}
			if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("ETag") != etag {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	// HEAD has the length and no body.
	resp, b := do(t, http.MethodHead, e.srv.URL+"/s3/fwb/dir/agent%201.bin", nil, nil)
	if resp.StatusCode != 200 || resp.ContentLength != 20 || len(b) != 0 {
		t.Errorf("HEAD: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, b)
	}
	// If-Match guards a resumed download against a replaced object.
	resp, _ = do(t, http.MethodGet, e.srv.URL+"/s3/fwb/dir/agent%201.bin", nil, map[string]string{"If-Match": `"stale"`})
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("If-Match stale: %d", resp.StatusCode)
	}
}

func TestErrorsAndRouting(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.st.Put("fwb", "a", "", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		code               string
	}{
		{"no such key", "GET", "/s3/fwb/missing", nil, 404, "NoSuchKey"},
		{"no such bucket", "GET", "/s3/nobucket/a", nil, 404, "NoSuchBucket"},
		{"head missing has no body", "HEAD", "/s3/fwb/missing", nil, 404, ""},
		{"bad bucket name", "PUT", "/s3/A_B", nil, 400, "InvalidBucketName"},
		{"copy not implemented", "PUT", "/s3/fwb/b", map[string]string{"X-Amz-Copy-Source": "/fwb/a"}, 501, "NotImplemented"},
		{"not s3: next handler", "GET", "/things", map[string]string{"Authorization": "none"}, 418, ""},
		{"s3-signed at the root", "GET", "/fwb/a", nil, 200, ""},
		{"iot-signed at the root: next handler", "GET", "/fwb/a", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=test/20250601/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("0", 64)}, 418, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, tc.method, e.srv.URL+tc.path, nil, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, b)
			}
			if tc.code != "" {
				if c := errCode(t, b); c != tc.code {
					t.Errorf("code %s, want %s", c, tc.code)
				}
			}
		})
	}
}

func TestPresignedURL(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.st.Put("fwb", "agent.bin", "", strings.NewReader("firmware")); err != nil {
		t.Fatal(err)
	}
	u, err := e.st.PresignGet("fwb", "agent.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, e.srv.URL+"/s3/fwb/agent.bin?") || !strings.Contains(u, "X-Amz-Expires=60") {
		t.Fatalf("url %s", u)
	}
	resp, b := do(t, http.MethodGet, u, nil, map[string]string{"Range": "bytes=4-"})
	if resp.StatusCode != 206 || string(b) != "ware" {
		t.Fatalf("presigned ranged GET: %d %q", resp.StatusCode, b)
	}
	tampered := func(f func(url.Values)) string {
		pu, _ := url.Parse(u)
		q := pu.Query()
		f(q)
		pu.RawQuery = q.Encode()
		return pu.String()
	}
	other := strings.Replace(u, "/fwb/agent.bin?", "/fwb/other.bin?", 1)
	cases := []struct {
		name, url, code string
	}{
		{"signature changed", tampered(func(q url.Values) { q.Set("X-Amz-Signature", strings.Repeat("a", 64)) }), "SignatureDoesNotMatch"},
		{"expiry extended", tampered(func(q url.Values) { q.Set("X-Amz-Expires", "3600") }), "SignatureDoesNotMatch"},
		{"other key", other, "SignatureDoesNotMatch"},
		{"other access key", strings.Replace(u, testCreds.AccessKeyID, "AKIDOTHER", 1), "InvalidAccessKeyId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, http.MethodGet, tc.url, nil, nil)
			if resp.StatusCode != 403 || errCode(t, b) != tc.code {
				t.Errorf("%d %s", resp.StatusCode, b)
			}
		})
	}
	e.clock.Add(59 * time.Second)
	if resp, _ := do(t, http.MethodGet, u, nil, nil); resp.StatusCode != 200 {
		t.Errorf("at 59s: %d", resp.StatusCode)
	}
	e.clock.Add(time.Second)
	resp, b = do(t, http.MethodGet, u, nil, nil)
	if resp.StatusCode != 403 || errCode(t, b) != "AccessDenied" || !strings.Contains(string(b), "Request has expired") {
		t.Errorf("at 60s: %d %s", resp.StatusCode, b)
	}
	if _, err := e.st.PresignGet("fwb", "k", 8*24*time.Hour); !errors.Is(err, ErrInvalid) {
		t.Errorf("8-day presign: %v", err)
	}
}

// TestAuth: every request must be signed with the store's credentials;
// the refusals are S3's.
func TestAuth(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.st.Put("fwb", "a", "", strings.NewReader("firmware")); err != nil {
		t.Fatal(err)
	}
	signed := func(method, path, body string, creds sigv4.Credentials, hash string, at time.Time) *http.Request {
		req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sigv4.Sign(req, hash, creds, "us-east-1", "s3", at)
		return req
	}
	wrongSecret := testCreds
	wrongSecret.SecretAccessKey = "guess"
	otherKey := testCreds
	otherKey.AccessKeyID = "AKIDOTHER"
	tests := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"signed GET", signed("GET", "/s3/fwb/a", "", testCreds, sigv4.UnsignedPayload, testClockStart), 200, ""},
		{"signed PUT with body hash", signed("PUT", "/s3/fwb/b", "new", testCreds, sigv4.PayloadHash([]byte("new")), testClockStart), 200, ""},
		{"unsigned GET", func() *http.Request { r, _ := http.NewRequest("GET", e.srv.URL+"/s3/fwb/a", nil); return r }(), 403, "AccessDenied"},
		{"unsigned PUT", func() *http.Request {
			r, _ := http.NewRequest("PUT", e.srv.URL+"/s3/fwb/a", strings.NewReader("evil"))
			return r
		}(), 403, "AccessDenied"},
		{"wrong secret", signed("PUT", "/s3/fwb/a", "evil", wrongSecret, sigv4.UnsignedPayload, testClockStart), 403, "SignatureDoesNotMatch"},
		{"unknown key", signed("GET", "/s3/fwb/a", "", otherKey, sigv4.UnsignedPayload, testClockStart), 403, "InvalidAccessKeyId"},
		{"skewed", signed("GET", "/s3/fwb/a", "", testCreds, sigv4.UnsignedPayload, testClockStart.Add(-time.Hour)), 403, "RequestTimeTooSkewed"},
		{"body not the signed one", signed("PUT", "/s3/fwb/a", "evil", testCreds, sigv4.PayloadHash([]byte("good")), testClockStart), 400, "XAmzContentSHA256Mismatch"},
		{"no content hash", func() *http.Request {
			r := signed("GET", "/s3/fwb/a", "", testCreds, sigv4.UnsignedPayload, testClockStart)
			r.Header.Del("X-Amz-Content-Sha256")
			return r
		}(), 400, "InvalidRequest"},
		{"garbled header", func() *http.Request {
			r := signed("GET", "/s3/fwb/a", "", testCreds, sigv4.UnsignedPayload, testClockStart)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
			return r
		}(), 400, "AuthorizationHeaderMalformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || tc.code != "" && errCode(t, b) != tc.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
	if got, _ := e.st.Get("fwb", "a", 100); string(got) != "firmware" {
		t.Errorf("object a is %q after the refused writes", got)
	}
}

// TestMaxObjectBytes: a PUT past the configured bound is EntityTooLarge and
// stores nothing, whether the length is announced or not.
func TestMaxObjectBytes(t *testing.T) {
	e := newTestEnv(t)
	st, err := New(Options{DB: e.db, Dir: e.dir + "/s3", BaseURL: e.srv.URL + "/s3", Now: e.clock.Now, Credentials: &testCreds, MaxObjectBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = st.Mount(http.NotFoundHandler())
	if resp, b := do(t, http.MethodPut, e.srv.URL+"/s3/fwb/ok", strings.NewReader("0123456789"), nil); resp.StatusCode != 200 {
		t.Fatalf("10 bytes: %d %s", resp.StatusCode, b)
	}
	for name, body := range map[string]io.Reader{
		"with Content-Length": strings.NewReader("0123456789A"),
		"chunked":             io.MultiReader(strings.NewReader("01234"), strings.NewReader("56789A")),
	} {
		resp, b := do(t, http.MethodPut, e.srv.URL+"/s3/fwb/big", body, nil)
		if resp.StatusCode != 400 || errCode(t, b) != "EntityTooLarge" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	if _, err := st.Get("fwb", "big", 100); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("the refused object: %v", err)
	}
}

func TestChunkedUploadAndMultipart(t *testing.T) {
	e := newTestEnv(t)
	chunked := "5;chunk-signature=abc\r\nhello\r\n6;chunk-signature=def\r\n world\r\n0;chunk-signature=0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
	resp, b := do(t, http.MethodPut, e.srv.URL+"/s3/fwb/c.txt", strings.NewReader(chunked),
		map[string]string{"Content-Encoding": "aws-chunked", "X-Amz-Content-Sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
	if resp.StatusCode != 200 {
		t.Fatalf("chunked PUT: %d %s", resp.StatusCode, b)
	}
	if got, _ := e.st.Get("fwb", "c.txt", 100); string(got) != "hello world" {
		t.Errorf("chunked body stored as %q", got)
	}
	resp, b = do(t, http.MethodPut, e.srv.URL+"/s3/fwb/bad.txt", strings.NewReader("zz\r\nhello"),
		map[string]string{"Content-Encoding": "aws-chunked"})
	if resp.StatusCode != 400 || errCode(t, b) != "IncompleteBody" {
		t.Errorf("malformed chunked PUT: %d %s", resp.StatusCode, b)
	}

	// Multipart over HTTP.
	resp, b = do(t, http.MethodPost, e.srv.URL+"/s3/fwb/big.bin?uploads", nil, nil)
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	if resp.StatusCode != 200 || xml.Unmarshal(b, &init) != nil || init.UploadID == "" {
		t.Fatalf("initiate: %d %s", resp.StatusCode, b)
	}
	var etags []string
	for i, part := range []string{"part-one|", "part-two"} {
		resp, b = do(t, http.MethodPut, fmt.Sprintf("%s/s3/fwb/big.bin?partNumber=%d&uploadId=%s", e.srv.URL, i+1, init.UploadID), strings.NewReader(part), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("part %d: %d %s", i+1, resp.StatusCode, b)
		}
		etags = append(etags, resp.Header.Get("ETag"))
	}
	complete := fmt.Sprintf("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>", etags[0], etags[1])
	resp, b = do(t, http.MethodPost, e.srv.URL+"/s3/fwb/big.bin?uploadId="+init.UploadID, strings.NewReader(complete), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `-2&#34;`) {
		t.Fatalf("complete: %d %s", resp.StatusCode, b)
	}
	if got, _ := e.st.Get("fwb", "big.bin", 100); string(got) != "part-one|part-two" {
		t.Errorf("multipart object %q", got)
	}
	resp, b = do(t, http.MethodPost, e.srv.URL+"/s3/fwb/big.bin?uploadId="+init.UploadID, strings.NewReader(complete), nil)
	if resp.StatusCode != 404 || errCode(t, b) != "NoSuchUpload" {
		t.Errorf("complete twice: %d %s", resp.StatusCode, b)
	}
}

func TestListObjects(t *testing.T) {
	e := newTestEnv(t)
	for _, k := range []string{"a/1", "a/2", "b", "c/x/y", "d"} {
		if _, err := e.st.Put("fwb", k, "", strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		Contents []struct {
			Key string `xml:"Key"`
		} `xml:"Contents"`
		CommonPrefixes []struct {
			Prefix string `xml:"Prefix"`
		} `xml:"CommonPrefixes"`
		IsTruncated bool   `xml:"IsTruncated"`
		Next        string `xml:"NextContinuationToken"`
	}
	list := func(q string) (keys []string, next string) {
		resp, b := do(t, http.MethodGet, e.srv.URL+"/s3/fwb?list-type=2&"+q, nil, nil)
		var r result
		if resp.StatusCode != 200 || xml.Unmarshal(b, &r) != nil {
			t.Fatalf("list %s: %d %s", q, resp.StatusCode, b)
		}
		for _, c := range r.Contents {
			keys = append(keys, c.Key)
		}
		for _, p := range r.CommonPrefixes {
			keys = append(keys, p.Prefix)
		}
		return keys, r.Next
	}
	keys, next := list("delimiter=/")
	if diff := cmp.Diff([]string{"b", "d", "a/", "c/"}, keys); diff != "" || next != "" {
		t.Errorf("delimiter list (-want +got):\n%s next %q", diff, next)
	}
	var all []string
	tok := ""
	for range 10 {
		keys, next = list("max-keys=2&continuation-token=" + tok)
		all = append(all, keys...)
		if next == "" {
			break
		}
		tok = next
	}
	if diff := cmp.Diff([]string{"a/1", "a/2", "b", "c/x/y", "d"}, all); diff != "" {
		t.Errorf("paged list (-want +got):\n%s", diff)
	}
	resp, b := do(t, http.MethodGet, e.srv.URL+"/s3/", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "<Name>fwb</Name>") {
		t.Errorf("list buckets: %d %s", resp.StatusCode, b)
	}
}

func TestParseObjectURL(t *testing.T) {
	tests := []struct {
		in, bucket, key string
		ok              bool
	}{
		{"https://s3.us-east-1.amazonaws.com/fw-bucket/agent-1.2.3.tar.gz", "fw-bucket", "agent-1.2.3.tar.gz", true},
		{"https://s3.amazonaws.com/fwb/dir/a.bin", "fwb", "dir/a.bin", true},
		{"https://s3-eu-west-1.amazonaws.com/fwb/a", "fwb", "a", true},
		{"https://fwb.s3.us-west-2.amazonaws.com/dir/a", "fwb", "dir/a", true},
		{"https://fwb.s3.amazonaws.com/a", "fwb", "a", true},
		{"s3://fwb/a/b", "fwb", "a/b", true},
		{"http://127.0.0.1:8080/s3/fwb/a", "fwb", "a", true},
		{"https://example.com/fwb/a", "", "", false},
		{"https://s3.amazonaws.com/fwb", "", "", false},
		{"ftp://s3.amazonaws.com/fwb/a", "", "", false},
		{"https://s3.amazonaws.com/F_W/a", "", "", false},
		{"%zz", "", "", false},
	}
	for _, tc := range tests {
		b, k, err := ParseObjectURL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || k != tc.key {
			t.Errorf("ParseObjectURL(%q) = %q, %q, %v", tc.in, b, k, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-4", "bytes=-3", "bytes=5-", "bytes=0-1,2-3", "bytes=99999999999999999999-", ""} {
		f.Add(s, int64(20))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		start, end, ok, err := parseRange(h, size)
		if ok && (start < 0 || end < start || end >= size) {
			t.Fatalf("parseRange(%q, %d) = %d-%d", h, size, start, end)
		}
		if ok && err != nil {
			t.Fatalf("ok with error %v", err)
		}
	})
}

func FuzzChunkedReader(f *testing.F) {
	f.Add([]byte("5;chunk-signature=abc\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"))
	f.Add([]byte("ffffffffffffffff\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := io.ReadAll(io.LimitReader(newChunkedReader(bytes.NewReader(b)), int64(len(b))+1))
		if err == nil && len(out) > len(b) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(b))
		}
	})
}

func FuzzParseObjectURL(f *testing.F) {
	for _, s := range []string{"https://s3.amazonaws.com/fwb/a", "https://fwb.s3.amazonaws.com/a", "s3://fwb/a", "http://h/s3/fwb/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, k, err := ParseObjectURL(s)
		if err == nil && (!ValidBucketName(b) || !validKey(k)) {
			t.Fatalf("ParseObjectURL(%q) = %q, %q", s, b, k)
		}
	})
}
