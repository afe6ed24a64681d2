package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/iotagent/iotagent/cloud/pki"
)

func TestClient(t *testing.T) {
	creds := Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "s3cret"}
	for _, strict := range []bool{false, true} {
		name := "lenient"
		if strict {
			name = "strict"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnvClock(t, time.Now, func(o *Options) {
				if strict {
					o.Credentials, o.NoAuth = &creds, false
				}
			})
			hs := httptest.NewServer(e.srv)
			t.Cleanup(hs.Close)
			c := &Client{BaseURL: hs.URL + "/", HTTP: hs.Client()}
			if strict {
				c.Credentials = &creds
			}
			ctx := context.Background()

			if err := c.CreateThing(ctx, "lamp"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.reg.DescribeThing("lamp"); err != nil {
				t.Errorf("thing not in the registry: %v", err)
			}
			id, arn, certPEM, keyPEM, err := c.CreateKeysAndCertificate(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if cert, err := pki.ParseCertificatePEM([]byte(certPEM)); err != nil || pki.CertificateID(cert.Raw) != id {
				t.Errorf("certificate PEM does not match id %s: %v", id, err)
			}
			if _, err := pki.ParseKeyPEM([]byte(keyPEM)); err != nil {
				t.Errorf("key PEM: %v", err)
			}
			if got, _ := e.reg.DescribeCertificate(id); got.Status != "ACTIVE" {
				t.Errorf("status %q, want ACTIVE", got.Status)
			}
			if err := c.AttachThingPrincipal(ctx, "lamp", arn); err != nil {
				t.Fatal(err)
			}
			if ps, _ := e.reg.ThingPrincipals("lamp"); !cmp.Equal(ps, []string{id}) {
				t.Errorf("principals %v, want [%s]", ps, id)
			}
			if _, err := c.UpdateThingShadow(ctx, "lamp", "cfg", []byte(`{"state":{"desired":{"on":true}}}`)); err != nil {
				t.Fatal(err)
			}
			doc, err := c.GetThingShadow(ctx, "lamp", "cfg")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(doc), `"desired":{"on":true}`) {
				t.Errorf("shadow %s", doc)
			}

			_, err = c.GetThingShadow(ctx, "lamp", "")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an *APIError", err)
			}
			want := APIError{Status: 404, Code: "ResourceNotFoundException", Message: "No shadow exists with name: 'lamp'"}
			if d := cmp.Diff(want, *ae); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			_, err = c.UpdateThingShadow(ctx, "lamp", "", nil)
			if !errors.As(err, &ae) || ae.Code != "InvalidRequestException" {
				t.Errorf("empty update: got %v, want InvalidRequestException", err)
			}
			if err := c.AttachThingPrincipal(ctx, "lamp", "not-an-arn"); !errors.As(err, &ae) || ae.Status != 400 {
				t.Errorf("bad principal: got %v, want a 400 APIError", err)
			}
		})
	}
	t.Run("unsigned client against strict server", func(t *testing.T) {
		e := newEnvClock(t, time.Now, func(o *Options) { o.Credentials, o.NoAuth = &creds, false })
		hs := httptest.NewServer(e.srv)
		t.Cleanup(hs.Close)
		err := (&Client{BaseURL: hs.URL}).CreateThing(context.Background(), "lamp")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != "MissingAuthenticationTokenException" || ae.Status != 403 {
			t.Errorf("got %v, want 403 MissingAuthenticationTokenException", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		hs := httptest.NewServer(http.NotFoundHandler())
		hs.Close()
		err := (&Client{BaseURL: hs.URL}).CreateThing(context.Background(), "lamp")
		var ae *APIError
		if err == nil || errors.As(err, &ae) {
			t.Errorf("got %v, want a transport error", err)
		}
	})
}

func TestResponseError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header string
		body   string
		want   APIError
	}{
		{"header wins", 404, "ResourceNotFoundException", `{"message":"gone","__type":"Other"}`, APIError{404, "ResourceNotFoundException", "gone"}},
		{"header with suffix", 400, "InvalidRequestException:http://internal", `{"Message":"bad"}`, APIError{400, "InvalidRequestException", "bad"}},
		{"string code", 409, "", `{"code":"ConflictException","message":"m"}`, APIError{409, "ConflictException", "m"}},
		{"namespaced type", 400, "", `{"__type":"com.amazon#ThrottlingException","message":"slow"}`, APIError{400, "ThrottlingException", "slow"}},
		{"numeric code ignored", 404, "", `{"code":404,"message":"m"}`, APIError{404, "Not Found", "m"}},
		{"not JSON", 502, "", `bad gateway`, APIError{502, "Bad Gateway", "bad gateway"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("x-amzn-ErrorType", tc.header)
			}
			if d := cmp.Diff(tc.want, *responseError(tc.status, h, []byte(tc.body))); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
