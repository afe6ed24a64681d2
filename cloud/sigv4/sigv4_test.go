package sigv4

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSignatureKnownAnswer checks the signer against AWS's published SigV4
// test suite (get-vanilla and get-vanilla-query-order-key-case).
func TestSignatureKnownAnswer(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	tests := []struct {
		name, query, want string
	}{
		{"get-vanilla", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"get-vanilla-query-order-key-case", "Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Auth{AccessKeyID: "AKIDEXAMPLE", Date: "20150830", Region: "us-east-1", Service: "service",
				SignedHeaders: []string{"host", "x-amz-date"}}
			hdr := map[string]string{"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
			cr := canonicalRequest("GET", "/", tc.query, a.SignedHeaders, func(n string) string { return hdr[n] }, PayloadHash(nil))
			if got := signature(secret, a, "20150830T123600Z", cr); got != tc.want {
				t.Errorf("signature %s, want %s\ncanonical request:\n%s", got, tc.want, cr)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, uri, query string }{
		{"/topics/a%2Fb", "/topics/a%252Fb", ""},
		{"/topics/a%20b%2B%23", "/topics/a%2520b%252B%2523", ""},
		{"/things/x:y", "/things/x%3Ay", ""},
		{"/", "/", "a=1&a=0&b=%2F&c=&d=a%20b"},
	}
	for _, tc := range tests {
		if got := uriEncode(tc.in, false); got != tc.uri {
			t.Errorf("uriEncode(%q) = %q, want %q", tc.in, got, tc.uri)
		}
	}
	if got, want := canonicalQuery("d=a+b&b=%2f&a=1&c&a=0&&"), "a=0&a=1&b=%2F&c=&d=a%20b"; got != want {
		t.Errorf("canonicalQuery = %q, want %q", got, want)
	}
}

func TestParseAuthorization(t *testing.T) {
	sig := strings.Repeat("ab", 32)
	good := "AWS4-HMAC-SHA256 Credential=AKID/20240601/us-east-1/iotdata/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig
	a, err := ParseHeader(good)
	if err != nil {
		t.Fatal(err)
	}
	want := &Auth{AccessKeyID: "AKID", Date: "20240601", Region: "us-east-1", Service: "iotdata",
		SignedHeaders: []string{"host", "x-amz-date"}, Signature: sig}
	if d := cmp.Diff(want, a); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := ParseHeader(strings.ReplaceAll(good, ", ", ",")); err != nil {
		t.Errorf("no spaces after commas: %v", err)
	}
	bad := map[string]string{
		"empty":              "",
		"other algorithm":    strings.Replace(good, "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1),
		"basic":              "Basic dGVzdDp0ZXN0",
		"short scope":        strings.Replace(good, "us-east-1/iotdata/", "iotdata/", 1),
		"bad terminator":     strings.Replace(good, "aws4_request", "aws5_request", 1),
		"bad date":           strings.Replace(good, "20240601", "2024-06-", 1),
		"empty region":       strings.Replace(good, "us-east-1", "", 1),
		"upper header":       strings.Replace(good, "host;", "Host;", 1),
		"empty header":       strings.Replace(good, "host;", ";", 1),
		"short signature":    strings.Replace(good, sig, sig[:63], 1),
		"upper signature":    strings.Replace(good, sig, strings.ToUpper(sig), 1),
		"missing signature":  strings.Replace(good, ", Signature="+sig, "", 1),
		"duplicate key":      good + ", Signature=" + sig,
		"unknown key":        good + ", Foo=bar",
		"not key=value":      good + ", junk",
		"no credential":      "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + sig,
		"algorithm only":     "AWS4-HMAC-SHA256",
		"space in signed hd": strings.Replace(good, "host;", "ho st;", 1),
	}
	for name, h := range bad {
		t.Run(name, func(t *testing.T) {
			if a, err := ParseHeader(h); err == nil {
				t.Errorf("parsed %+v, want an error", a)
			}
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	sig := strings.Repeat("0f", 32)
	for _, s := range []string{
		"AWS4-HMAC-SHA256 Credential=AKID/20240601/us-east-1/iot/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=a/20240601/r/s/aws4_request,SignedHeaders=host,Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=//// , SignedHeaders=;, Signature=",
		"AWS4-HMAC-SHA256 ,,,=",
		"Basic Zm9vOmJhcg==",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseHeader(h)
		if err != nil {
			return
		}
		// Whatever parses formats back into a header that parses the same.
		again := "AWS4-HMAC-SHA256 Credential=" + a.AccessKeyID + "/" + a.Date + "/" + a.Region + "/" + a.Service +
			"/aws4_request, SignedHeaders=" + strings.Join(a.SignedHeaders, ";") + ", Signature=" + a.Signature
		b, err := ParseHeader(again)
		if err != nil {
			t.Fatalf("reformatted %q: %v", again, err)
		}
		if d := cmp.Diff(a, b); d != "" {
			t.Fatalf("(-first +again):\n%s", d)
		}
		if len(a.Signature) != 64 || len(a.Date) != 8 || a.AccessKeyID == "" || a.Region == "" || a.Service == "" || len(a.SignedHeaders) == 0 {
			t.Fatalf("parsed an incomplete authorization %+v", a)
		}
	})
}

var (
	testCreds = Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "s3cret"}
	testNow   = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

// verifyReq parses and verifies a request as a server receives it.
func verifyReq(t *testing.T, r *http.Request, c Check) error {
	t.Helper()
	a, err := Parse(r)
	if err != nil {
		return err
	}
	if a == nil {
		t.Fatal("no signature parsed")
	}
	return Verify(r, a, c)
}

func TestSignVerify(t *testing.T) {
	for _, s3 := range []bool{false, true} {
		service, hash := "iotdata", PayloadHash([]byte("body"))
		if s3 {
			service, hash = "s3", UnsignedPayload
		}
		// The path as sent, with escapes that S3 keeps and others encode again.
		req := httptest.NewRequest("PUT", "http://sim:80/s3/b/dir/a%20b%2Bc?x=1&y=a%2Fb", strings.NewReader("body"))
		Sign(req, hash, testCreds, "us-east-1", service, testNow)
		c := Check{Credentials: testCreds, Region: "us-east-1", Now: testNow.Add(time.Minute), S3: s3, PayloadHash: hash}
		if s3 {
			c.PayloadHash = req.Header.Get("X-Amz-Content-Sha256")
		}
		if err := verifyReq(t, req, c); err != nil {
			t.Errorf("%s: %v", service, err)
		}
		bad := c
		bad.Credentials.SecretAccessKey = "guess"
		if err := verifyReq(t, req, bad); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s, wrong secret: %v", service, err)
		}
		bad = c
		bad.Credentials.AccessKeyID = "OTHER"
		if err := verifyReq(t, req, bad); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("%s, other key: %v", service, err)
		}
		bad = c
		bad.Now = testNow.Add(16 * time.Minute)
		if err := verifyReq(t, req, bad); !errors.Is(err, ErrSkew) {
			t.Errorf("%s, skewed: %v", service, err)
		}
	}
}

func TestPresign(t *testing.T) {
	u, err := Presign("GET", "http://127.0.0.1:8080/s3/ota/agent%201.bin", testCreds, "us-east-1", "s3", testNow, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := Check{Credentials: testCreds, Region: "us-east-1", S3: true}
	at := func(u string, now time.Time) error {
		c := c
		c.Now = now
		return verifyReq(t, httptest.NewRequest("GET", u, nil), c)
	}
	if err := at(u, testNow.Add(59*time.Second)); err != nil {
		t.Fatalf("valid presigned URL %s: %v", u, err)
	}
	if err := at(u, testNow.Add(60*time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: %v", err)
	}
	for name, tc := range map[string]struct {
		from, to string
		want     error
	}{
		"longer expiry": {"X-Amz-Expires=60", "X-Amz-Expires=600", ErrMismatch},
		"other object":  {"agent%201.bin", "evil.bin", ErrMismatch},
		"other key":     {"AKIDTEST", "AKIDOTHER", ErrUnknownKey},
		"bad signature": {"X-Amz-Signature=", "X-Amz-Signature=0", ErrMalformed},
		"no expiry":     {"&X-Amz-Expires=60", "", ErrMalformed},
	} {
		if err := at(strings.Replace(u, tc.from, tc.to, 1), testNow); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := Presign("GET", "http://h/x", testCreds, "us-east-1", "s3", testNow, 8*24*time.Hour); err == nil {
		t.Error("an 8-day presign was made")
	}
}

// FuzzParseQuery: whatever presigned query parses verifies without
// panicking, and only the signed query (in any order) verifies.
func FuzzParseQuery(f *testing.F) {
	u, _ := Presign("GET", "http://h/s3/b/k", testCreds, "us-east-1", "s3", testNow, time.Minute)
	_, q, _ := strings.Cut(u, "?")
	f.Add(q)
	f.Add("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20250601%2Fr%2Fs3%2Faws4_request&X-Amz-Date=20250601T120000Z&X-Amz-Expires=1&X-Amz-SignedHeaders=host&X-Amz-Signature=00")
	f.Add("X-Amz-Signature=&X-Amz-Signature=")
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "http://h/s3/b/k", nil)
		r.URL.RawQuery = raw
		r.RequestURI = "/s3/b/k?" + raw
		a, err := Parse(r)
		if err != nil || a == nil {
			return
		}
		if !a.Presigned || a.Expires <= 0 || a.Expires > MaxPresignExpiry || len(a.Signature) != 64 {
			t.Fatalf("parsed an invalid presigned query %+v", a)
		}
		err = Verify(r, a, Check{Credentials: testCreds, Region: "us-east-1", Now: testNow, S3: true})
		if err == nil && canonicalQuery(withoutSignature(raw)) != canonicalQuery(withoutSignature(q)) {
			t.Fatalf("a query other than the signed one verified: %q", raw)
		}
	})
}
