package api

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/iotagent/iotagent/cloud/pki"
)

func TestDescribeEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	for _, typ := range []string{"", "iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"} {
		t.Run("type "+typ, func(t *testing.T) {
			var out map[string]any
			e.do(t, "GET", "/endpoint?endpointType="+url.QueryEscape(typ), nil).json(t, &out)
			if d := cmp.Diff(map[string]any{"endpointAddress": "sim-ats.iot.us-east-1.example"}, out); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	t.Run("unknown type", func(t *testing.T) {
		e.wantError(t, e.do(t, "GET", "/endpoint?endpointType=iot:Nope", nil), 400, "InvalidRequestException")
	})
	t.Run("host from request", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Endpoint = "" })
		var out map[string]string
		e.do(t, "GET", "http://127.0.0.1:8443/endpoint", nil).json(t, &out)
		if out["endpointAddress"] != "127.0.0.1" {
			t.Errorf("endpointAddress = %q, want the bare request host", out["endpointAddress"])
		}
	})
}

func TestThings(t *testing.T) {
	e := newEnv(t, nil)
	var created map[string]string
	e.do(t, "POST", "/things/lamp", []byte(`{"attributePayload":{"attributes":{"room":"hall"}}}`),
		"Content-Type", "application/json").json(t, &created)
	if created["thingName"] != "lamp" || created["thingArn"] != "arn:aws:iot:us-east-1:123456789012:thing/lamp" || created["thingId"] == "" {
		t.Errorf("CreateThing = %v", created)
	}

	t.Run("idempotent", func(t *testing.T) {
		var again map[string]string
		e.do(t, "POST", "/things/lamp", []byte(`{"attributePayload":{"attributes":{"room":"hall"}}}`)).json(t, &again)
		if d := cmp.Diff(created, again); d != "" {
			t.Errorf("repeat CreateThing (-first +again):\n%s", d)
		}
	})
	t.Run("no body", func(t *testing.T) {
		var out map[string]string
		e.do(t, "POST", "/things/bare", nil).json(t, &out)
		if out["thingName"] != "bare" {
			t.Errorf("CreateThing = %v", out)
		}
	})
	t.Run("describe", func(t *testing.T) {
		r := e.do(t, "GET", "/things/lamp", nil)
		var got map[string]any
		r.json(t, &got)
		want := map[string]any{
			"defaultClientId": "lamp", "thingName": "lamp", "thingId": created["thingId"],
			"thingArn": created["thingArn"], "attributes": map[string]any{"room": "hall"}, "version": float64(1),
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("DescribeThing (-want +got):\n%s", d)
		}
	})
	t.Run("describe bare has empty attributes", func(t *testing.T) {
		r := e.do(t, "GET", "/things/bare", nil)
		if !strings.Contains(string(r.Body), `"attributes":{}`) {
			t.Errorf("body %s", r.Body)
		}
	})

	errs := []struct {
		name, method, target, body string
		status                     int
		code, msg                  string
	}{
		{"create with other attributes", "POST", "/things/lamp", `{"attributePayload":{"attributes":{"room":"attic"}}}`, 409, "ResourceAlreadyExistsException", ""},
		{"create bad name", "POST", "/things/bad%20name", ``, 400, "InvalidRequestException",
			"1 validation error detected: Value 'bad name' at 'thingName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+"},
		{"create bad JSON", "POST", "/things/x", `{"attributePayload":`, 400, "InvalidRequestException", ""},
		{"create bad attribute", "POST", "/things/x", `{"attributePayload":{"attributes":{"a b":"c"}}}`, 400, "InvalidRequestException", ""},
		{"create bad type name", "POST", "/things/x", `{"thingTypeName":"a b"}`, 400, "InvalidRequestException", ""},
		{"create in unknown billing group", "POST", "/things/x", `{"billingGroupName":"bg"}`, 404, "ResourceNotFoundException", ""},
		{"describe missing", "GET", "/things/ghost", ``, 404, "ResourceNotFoundException", "Thing ghost cannot be found."},
		{"describe bad name", "GET", "/things/a%2Fb", ``, 400, "InvalidRequestException", ""},
		{"delete bad version", "DELETE", "/things/lamp?expectedVersion=x", ``, 400, "InvalidRequestException", ""},
		{"delete version conflict", "DELETE", "/things/lamp?expectedVersion=5", ``, 409, "VersionConflictException", ""},
		{"PATCH not allowed", "PATCH", "/things/lamp", ``, 405, "MethodNotAllowedException", ""},
		{"unknown path", "GET", "/thingz", ``, 404, "UnknownOperationException", ""},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			msg := e.wantError(t, e.do(t, tc.method, tc.target, []byte(tc.body)), tc.status, tc.code)
			if tc.msg != "" && msg != tc.msg {
				t.Errorf("message = %q, want %q", msg, tc.msg)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		if r := e.do(t, "DELETE", "/things/lamp?expectedVersion=1", nil); r.Status != 200 {
			t.Fatalf("DeleteThing: %d %s", r.Status, r.Body)
		}
		e.wantError(t, e.do(t, "GET", "/things/lamp", nil), 404, "ResourceNotFoundException")
		if r := e.do(t, "DELETE", "/things/lamp", nil); r.Status != 200 {
			t.Errorf("DeleteThing of a missing thing: %d %s, want 200", r.Status, r.Body)
		}
		if r := e.do(t, "DELETE", "/things/lamp?expectedVersion=3", nil); r.Status != 200 {
			t.Errorf("DeleteThing of a missing thing with a version: %d %s, want 200", r.Status, r.Body)
		}
	})
	t.Run("delete with a principal", func(t *testing.T) {
		_, arn := e.mustCreateCert(t, true)
		e.do(t, "POST", "/things/held", nil).json(t, &map[string]any{})
		if r := e.do(t, "PUT", "/things/held/principals", nil, "x-amzn-principal", arn); r.Status != 200 {
			t.Fatalf("attach: %d %s", r.Status, r.Body)
		}
		msg := e.wantError(t, e.do(t, "DELETE", "/things/held", nil), 400, "InvalidRequestException")
		if !strings.Contains(msg, "still attached") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("registry failure", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Registry = brokenRegistry{o.Registry} })
		msg := e.wantError(t, e.do(t, "GET", "/things/lamp", nil), 500, "InternalFailureException")
		if strings.Contains(msg, errDisk.Error()) {
			t.Errorf("internal detail leaked: %q", msg)
		}
		e.wantError(t, e.do(t, "GET", "/things", nil), 500, "InternalFailureException")
	})
}

// pages follows a paginated list operation until it has no token, as the CLI
// does, failing on a repeated token or a page over the size asked for.
func pages[T any](t *testing.T, e *env, base, tokenIn, tokenOut, items string, size int) []T {
	t.Helper()
	var all []T
	seen := map[string]bool{}
	tok := ""
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("pagination did not terminate")
		}
		target := base
		if tok != "" {
			target += "&" + tokenIn + "=" + url.QueryEscape(tok)
		}
		var page map[string]json.RawMessage
		e.do(t, "GET", target, nil).json(t, &page)
		var got []T
		if err := json.Unmarshal(page[items], &got); err != nil {
			t.Fatalf("decode %s: %v", page[items], err)
		}
		if len(got) > size {
			t.Errorf("page of %d items > %d", len(got), size)
		}
		all = append(all, got...)
		raw, ok := page[tokenOut]
		if !ok {
			return all
		}
		if err := json.Unmarshal(raw, &tok); err != nil || tok == "" {
			t.Fatalf("token %s is not a non-empty string", raw)
		}
		if seen[tok] {
			t.Fatalf("token %q returned twice", tok)
		}
		seen[tok] = true
	}
}

func TestListThings(t *testing.T) {
	e := newEnv(t, nil)
	var names []string
	for i := range 7 {
		n := fmt.Sprintf("dev-%02d", 6-i)
		body := fmt.Sprintf(`{"attributePayload":{"attributes":{"batch":"b%d","n":"%d"}}}`, i%2, i)
		if i == 0 {
			body = `{"thingTypeName":"sensor"}`
		}
		e.do(t, "POST", "/things/"+n, []byte(body)).json(t, &map[string]any{})
		names = append(names, n)
	}
	slices.Sort(names)
	type item struct {
		ThingName     string            `json:"thingName"`
		ThingTypeName string            `json:"thingTypeName"`
		ThingArn      string            `json:"thingArn"`
		Attributes    map[string]string `json:"attributes"`
		Version       int64             `json:"version"`
	}
	got := pages[item](t, e, "/things?maxResults=3", "nextToken", "nextToken", "things", 3)
	var gotNames []string
	for _, it := range got {
		gotNames = append(gotNames, it.ThingName)
		if it.Version != 1 || it.ThingArn != "arn:aws:iot:us-east-1:123456789012:thing/"+it.ThingName {
			t.Errorf("item %+v", it)
		}
	}
	if d := cmp.Diff(names, gotNames); d != "" {
		t.Errorf("things (-want +got):\n%s", d)
	}

	filters := []struct {
		name, query string
		want        []string
	}{
		{"by attribute", "attributeName=batch&attributeValue=b1", []string{"dev-01", "dev-03", "dev-05"}},
		{"by attribute prefix", "attributeName=batch&attributeValue=b&usePrefixAttributeValue=true", []string{"dev-00", "dev-01", "dev-02", "dev-03", "dev-04", "dev-05"}},
		{"attribute present", "attributeName=n", []string{"dev-00", "dev-01", "dev-02", "dev-03", "dev-04", "dev-05"}},
		{"by type", "thingTypeName=sensor", []string{"dev-06"}},
		{"no match", "attributeName=nope", nil},
	}
	for _, f := range filters {
		t.Run(f.name, func(t *testing.T) {
			got := pages[item](t, e, "/things?maxResults=2&"+f.query, "nextToken", "nextToken", "things", 2)
			var names []string
			for _, it := range got {
				names = append(names, it.ThingName)
			}
			if d := cmp.Diff(f.want, names); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	for _, q := range []string{"maxResults=0", "maxResults=251", "nextToken=bm9wZQ%3D%3D", "usePrefixAttributeValue=maybe", "thingTypeName=a%20b"} {
		t.Run("bad "+q, func(t *testing.T) {
			e.wantError(t, e.do(t, "GET", "/things?"+q, nil), 400, "InvalidRequestException")
		})
	}
	t.Run("token past the end", func(t *testing.T) {
		r := e.do(t, "GET", "/things?nextToken="+url.QueryEscape(encodeToken(99)), nil)
		if r.Status != 200 || strings.Contains(string(r.Body), "nextToken") || !strings.Contains(string(r.Body), `"things":[]`) {
			t.Errorf("got %d %s, want an empty last page", r.Status, r.Body)
		}
	})
}

func TestCertificates(t *testing.T) {
	e := newEnv(t, nil)
	var out struct {
		CertificateArn string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
		CertificatePem string `json:"certificatePem"`
		KeyPair        struct {
			PublicKey  string `json:"PublicKey"`
			PrivateKey string `json:"PrivateKey"`
		} `json:"keyPair"`
	}
	e.do(t, "POST", "/keys-and-certificate?setAsActive=true", nil).json(t, &out)
	cert, err := pki.ParseCertificatePEM([]byte(out.CertificatePem))
	if err != nil {
		t.Fatal(err)
	}
	if id := pki.CertificateID(cert.Raw); out.CertificateID != id {
		t.Errorf("certificateId %s, want SHA-256 of DER %s", out.CertificateID, id)
	}
	if out.CertificateArn != "arn:aws:iot:us-east-1:123456789012:cert/"+out.CertificateID {
		t.Errorf("certificateArn %s", out.CertificateArn)
	}
	if cert.Subject.CommonName != certCommonName {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	key, err := pki.ParseKeyPEM([]byte(out.KeyPair.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(out.KeyPair.PublicKey))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		t.Fatalf("PublicKey %q is not a PUBLIC KEY PEM", out.KeyPair.PublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	if !key.Public().(equaler).Equal(pub) || !key.Public().(equaler).Equal(cert.PublicKey) {
		t.Error("PrivateKey, PublicKey and the certificate do not belong together")
	}
	// AWS hands out RSA 2048 keys as PKCS#1 PEM.
	if rk, ok := key.(*rsa.PrivateKey); !ok || rk.N.BitLen() != 2048 ||
		!strings.HasPrefix(out.KeyPair.PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\n") {
		t.Errorf("PrivateKey is a %T (%.40q), want an RSA 2048 key in a PKCS#1 PEM", key, out.KeyPair.PrivateKey)
	}

	t.Run("describe", func(t *testing.T) {
		var d map[string]map[string]any
		e.do(t, "GET", "/certificates/"+out.CertificateID, nil).json(t, &d)
		cd := d["certificateDescription"]
		for k, want := range map[string]any{
			"certificateId": out.CertificateID, "certificateArn": out.CertificateArn, "status": "ACTIVE",
			"certificatePem": out.CertificatePem, "ownedBy": "123456789012", "certificateMode": "DEFAULT",
			"creationDate": float64(testNow.Unix()), "lastModifiedDate": float64(testNow.Unix()), "customerVersion": float64(1),
		} {
			if d := cmp.Diff(want, cd[k]); d != "" {
				t.Errorf("%s (-want +got):\n%s", k, d)
			}
		}
		v, _ := cd["validity"].(map[string]any)
		if nb, ok := v["notBefore"].(float64); !ok || int64(nb) != cert.NotBefore.Unix() {
			t.Errorf("validity.notBefore = %v, want %d", v["notBefore"], cert.NotBefore.Unix())
		}
		if na, ok := v["notAfter"].(float64); !ok || int64(na) != cert.NotAfter.Unix() {
			t.Errorf("validity.notAfter = %v, want %d", v["notAfter"], cert.NotAfter.Unix())
		}
	})
	t.Run("inactive by default", func(t *testing.T) {
		id, _ := e.mustCreateCert(t, false)
		var d map[string]map[string]any
		e.do(t, "GET", "/certificates/"+id, nil).json(t, &d)
		if s := d["certificateDescription"]["status"]; s != "INACTIVE" {
			t.Errorf("status %v, want INACTIVE", s)
		}
	})
	t.Run("update and revoke", func(t *testing.T) {
		id, _ := e.mustCreateCert(t, false)
		for _, st := range []string{"ACTIVE", "INACTIVE", "REVOKED"} {
			if r := e.do(t, "PUT", "/certificates/"+id+"?newStatus="+st, nil); r.Status != 200 {
				t.Fatalf("UpdateCertificate %s: %d %s", st, r.Status, r.Body)
			}
			var d map[string]map[string]any
			e.do(t, "GET", "/certificates/"+id, nil).json(t, &d)
			if s := d["certificateDescription"]["status"]; s != st {
				t.Errorf("status %v, want %s", s, st)
			}
		}
		e.wantError(t, e.do(t, "PUT", "/certificates/"+id+"?newStatus=ACTIVE", nil), 406, "CertificateStateException")
	})
	missing := strings.Repeat("ab", 32)
	errs := []struct {
		name, method, target string
		status               int
		code                 string
	}{
		{"describe missing", "GET", "/certificates/" + missing, 404, "ResourceNotFoundException"},
		{"describe bad id", "GET", "/certificates/xyz", 400, "InvalidRequestException"},
		{"update missing", "PUT", "/certificates/" + missing + "?newStatus=ACTIVE", 404, "ResourceNotFoundException"},
		{"update without status", "PUT", "/certificates/" + out.CertificateID, 400, "InvalidRequestException"},
		{"update unknown status", "PUT", "/certificates/" + out.CertificateID + "?newStatus=ON", 400, "InvalidRequestException"},
		{"update to pending transfer", "PUT", "/certificates/" + out.CertificateID + "?newStatus=PENDING_TRANSFER", 400, "InvalidRequestException"},
		{"create bad setAsActive", "POST", "/keys-and-certificate?setAsActive=1", 400, "InvalidRequestException"},
		{"list bad pageSize", "GET", "/certificates?pageSize=0", 400, "InvalidRequestException"},
		{"list bad marker", "GET", "/certificates?marker=%25%25", 400, "InvalidRequestException"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			e.wantError(t, e.do(t, tc.method, tc.target, nil), tc.status, tc.code)
		})
	}
	t.Run("issuer failure", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Issuer = brokenIssuer{} })
		e.wantError(t, e.do(t, "POST", "/keys-and-certificate", nil), 500, "InternalFailureException")
	})
}

func TestListCertificates(t *testing.T) {
	var mu sync.Mutex
	tick := testNow
	clock := func() time.Time { // a second later on every reading
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Second)
		return tick
	}
	e := newEnvClock(t, clock, nil)
	var created []string // in creation order
	for range 5 {
		id, _ := e.mustCreateCert(t, true)
		created = append(created, id)
	}
	type item struct {
		CertificateArn  string  `json:"certificateArn"`
		CertificateID   string  `json:"certificateId"`
		Status          string  `json:"status"`
		CertificateMode string  `json:"certificateMode"`
		CreationDate    float64 `json:"creationDate"`
	}
	newest := slices.Clone(created)
	slices.Reverse(newest)
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"default newest first", "pageSize=2", newest},
		{"ascending", "pageSize=2&isAscendingOrder=true", created},
		{"one page", "pageSize=250&isAscendingOrder=true", created},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pages[item](t, e, "/certificates?"+tc.query, "marker", "nextMarker", "certificates", 250)
			var gotIDs []string
			for _, it := range got {
				gotIDs = append(gotIDs, it.CertificateID)
				if it.Status != "ACTIVE" || it.CertificateMode != "DEFAULT" || it.CreationDate <= float64(testNow.Unix()) ||
					it.CertificateArn != "arn:aws:iot:us-east-1:123456789012:cert/"+it.CertificateID {
					t.Errorf("item %+v", it)
				}
			}
			if d := cmp.Diff(tc.want, gotIDs); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestThingPrincipals(t *testing.T) {
	e := newEnv(t, nil)
	e.do(t, "POST", "/things/lamp", nil).json(t, &map[string]any{})
	var arns []string
	for range 3 {
		_, arn := e.mustCreateCert(t, true)
		if r := e.do(t, "PUT", "/things/lamp/principals", nil, "x-amzn-principal", arn); r.Status != 200 {
			t.Fatalf("AttachThingPrincipal: %d %s", r.Status, r.Body)
		}
		arns = append(arns, arn)
	}
	slices.Sort(arns)
	got := pages[string](t, e, "/things/lamp/principals?maxResults=1", "nextToken", "nextToken", "principals", 1)
	if d := cmp.Diff(arns, got); d != "" {
		t.Errorf("principals (-want +got):\n%s", d)
	}
	if r := e.do(t, "PUT", "/things/lamp/principals?thingPrincipalType=EXCLUSIVE_THING", nil, "x-amzn-principal", arns[0]); r.Status != 200 {
		t.Errorf("attach again: %d %s", r.Status, r.Body)
	}
	for _, a := range arns[:2] {
		if r := e.do(t, "DELETE", "/things/lamp/principals", nil, "x-amzn-principal", a); r.Status != 200 {
			t.Fatalf("DetachThingPrincipal: %d %s", r.Status, r.Body)
		}
	}
	got = pages[string](t, e, "/things/lamp/principals?maxResults=5", "nextToken", "nextToken", "principals", 5)
	if d := cmp.Diff(arns[2:], got); d != "" {
		t.Errorf("after detach (-want +got):\n%s", d)
	}

	missingARN := "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("0", 64)
	errs := []struct {
		name, method, target, principal string
		status                          int
		code                            string
	}{
		{"no principal", "PUT", "/things/lamp/principals", "", 400, "InvalidRequestException"},
		{"not an ARN", "PUT", "/things/lamp/principals", strings.Repeat("0", 64), 400, "InvalidRequestException"},
		{"not a certificate", "PUT", "/things/lamp/principals", "arn:aws:iot:us-east-1:123456789012:thing/x", 400, "InvalidRequestException"},
		{"bad certificate id", "PUT", "/things/lamp/principals", "arn:aws:iot:us-east-1:123456789012:cert/xyz", 400, "InvalidRequestException"},
		{"bad principal type", "PUT", "/things/lamp/principals?thingPrincipalType=ALL", arns[0], 400, "InvalidRequestException"},
		{"unknown certificate", "PUT", "/things/lamp/principals", missingARN, 404, "ResourceNotFoundException"},
		{"unknown thing", "PUT", "/things/ghost/principals", arns[0], 404, "ResourceNotFoundException"},
		{"detach unknown thing", "DELETE", "/things/ghost/principals", arns[0], 404, "ResourceNotFoundException"},
		{"bad thing name", "PUT", "/things/a%20b/principals", arns[0], 400, "InvalidRequestException"},
		{"list unknown thing", "GET", "/things/ghost/principals", "", 404, "ResourceNotFoundException"},
		{"list bad maxResults", "GET", "/things/lamp/principals?maxResults=x", "", 400, "InvalidRequestException"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.principal != "" {
				hdr = []string{"x-amzn-principal", tc.principal}
			}
			e.wantError(t, e.do(t, tc.method, tc.target, nil, hdr...), tc.status, tc.code)
		})
	}
}
