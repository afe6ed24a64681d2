package provisioning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

type createResp struct {
	CertificateID  string `json:"certificateId" cbor:"certificateId"`
	CertificatePEM string `json:"certificatePem" cbor:"certificatePem"`
	PrivateKey     string `json:"privateKey" cbor:"privateKey"`
	Token          string `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
}

type registerResp struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration" cbor:"deviceConfiguration"`
	ThingName           string            `json:"thingName" cbor:"thingName"`
}

type errResp struct {
	StatusCode   int    `json:"statusCode" cbor:"statusCode"`
	ErrorCode    string `json:"errorCode" cbor:"errorCode"`
	ErrorMessage string `json:"errorMessage" cbor:"errorMessage"`
}

type registerReq struct {
	Token  string            `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
	Params map[string]string `json:"parameters,omitempty" cbor:"parameters,omitempty"`
}

func csrPEM(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "box"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

const fleet = "$aws/provisioning-templates/" + cloud.ProvisioningTemplate + "/provision"

// TestFleetProvisioningEndToEnd provisions through iotsim with the claim
// certificate from endpoint.json, in JSON and CBOR, by both create APIs,
// then connects as the new thing.
func TestFleetProvisioningEndToEnd(t *testing.T) {
	sim, _ := startSim(t)
	for _, format := range []string{"json", "cbor"} {
		for _, csr := range []bool{false, true} {
			name := format + "/keys"
			if csr {
				name = format + "/csr"
			}
			t.Run(name, func(t *testing.T) {
				serial := strings.ReplaceAll("SN-"+name, "/", "-")
				claim := connectClaim(t, sim, "provision-claim-"+serial)
				var key *ecdsa.PrivateKey
				var outcome string
				var b []byte
				if csr {
					var err error
					if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
						t.Fatal(err)
					}
					outcome, b = claim.request("$aws/certificates/create-from-csr", format,
						encodeAs(t, format, map[string]string{"certificateSigningRequest": csrPEM(t, key)}))
				} else {
					body := []byte("{}")
					if format == "cbor" {
						body = nil // the docs' empty payload
					}
					outcome, b = claim.request("$aws/certificates/create", format, body)
				}
				if outcome != "accepted" {
					t.Fatalf("create: %s %s", outcome, b)
				}
				var cr createResp
				decodeAs(t, format, b, &cr)
				if len(cr.CertificateID) != 64 || cr.Token == "" || (cr.PrivateKey == "") != csr {
					t.Fatalf("create answer: %+v", cr)
				}
				c, err := sim.Registry().DescribeCertificate(cr.CertificateID)
				if err != nil || c.Status != registry.StatusPendingActivation {
					t.Fatalf("new certificate: %+v, %v; want PENDING_ACTIVATION", c, err)
				}

				outcome, b = claim.request(fleet, format, encodeAs(t, format, registerReq{cr.Token, map[string]string{"SerialNumber": serial}}))
				if outcome != "accepted" {
					t.Fatalf("RegisterThing: %s %s", outcome, b)
				}
				var rr registerResp
				decodeAs(t, format, b, &rr)
				if diff := cmp.Diff(registerResp{DeviceConfiguration: map[string]string{}, ThingName: serial}, rr); diff != "" {
					t.Errorf("RegisterThing answer (-want +got):\n%s", diff)
				}
				c, _ = sim.Registry().DescribeCertificate(cr.CertificateID)
				th, err := sim.Registry().DescribeThing(serial)
				if err != nil || c.Status != registry.StatusActive || !cmp.Equal(th.Principals, []string{cr.CertificateID}) ||
					th.Attributes["serialNumber"] != serial {
					t.Fatalf("after RegisterThing: cert %s, thing %+v (%v)", c.Status, th, err)
				}

				var cert tls.Certificate
				if csr {
					blk, _ := pem.Decode([]byte(cr.CertificatePEM))
					cert = tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}
				} else if cert, err = tls.X509KeyPair([]byte(cr.CertificatePEM), []byte(cr.PrivateKey)); err != nil {
					t.Fatal(err)
				}
				if _, err := connect(t, sim, serial, cert); err != nil {
					t.Fatalf("connect as the new thing: %v", err)
				}
			})
		}
	}
}

func TestRejections(t *testing.T) {
	sim, clk := startSim(t)
	allowTemplate(t, sim, "nope")
	claim := connectClaim(t, sim, "provision-claim-errors")
	newCert := func(t *testing.T) createResp {
		t.Helper()
		outcome, b := claim.request("$aws/certificates/create", "json", []byte("{}"))
		if outcome != "accepted" {
			t.Fatalf("create: %s", b)
		}
		var cr createResp
		decodeAs(t, "json", b, &cr)
		return cr
	}
	wantRejected := func(t *testing.T, base, format string, body []byte, want errResp) {
		t.Helper()
		outcome, b := claim.request(base, format, body)
		if outcome != "rejected" {
			t.Fatalf("%s: %s %s, want rejected", base, outcome, b)
		}
		var got errResp
		decodeAs(t, format, b, &got)
		if want.ErrorMessage == "" {
			got.ErrorMessage = ""
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rejection (-want +got):\n%s", diff)
		}
	}
	sn := map[string]string{"SerialNumber": "err-1"}

	t.Run("empty token", func(t *testing.T) {
		wantRejected(t, fleet, "json", []byte(`{"parameters":{"SerialNumber":"x"}}`),
			errResp{400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty."})
	})
	t.Run("bogus token", func(t *testing.T) {
		wantRejected(t, fleet, "json", encodeAs(t, "json", registerReq{"eyJib2d1cyI6dHJ1ZX0=", sn}),
			errResp{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken"})
	})
	t.Run("bogus token cbor", func(t *testing.T) {
		wantRejected(t, fleet, "cbor", encodeAs(t, "cbor", registerReq{"nope", sn}),
			errResp{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken"})
	})
	t.Run("missing parameter", func(t *testing.T) {
		cr := newCert(t)
		wantRejected(t, fleet, "json", encodeAs(t, "json", registerReq{cr.Token, nil}),
			errResp{StatusCode: 400, ErrorCode: "InvalidParameters"})
		// The token survives a failed attempt.
		if outcome, b := claim.request(fleet, "json", encodeAs(t, "json", registerReq{cr.Token, map[string]string{"SerialNumber": "err-missing"}})); outcome != "accepted" {
			t.Fatalf("retry with the parameter: %s", b)
		}
	})
	t.Run("reused token", func(t *testing.T) {
		cr := newCert(t)
		if outcome, b := claim.request(fleet, "json", encodeAs(t, "json", registerReq{cr.Token, sn})); outcome != "accepted" {
			t.Fatalf("first use: %s", b)
		}
		// An identical retry gets the same answer (the answer may be lost)...
		outcome, b := claim.request(fleet, "json", encodeAs(t, "json", registerReq{cr.Token, sn}))
		var rr registerResp
		decodeAs(t, "json", b, &rr)
		if outcome != "accepted" || rr.ThingName != "err-1" {
			t.Fatalf("identical retry: %s %s", outcome, b)
		}
		// ...any other use is a reuse.
		wantRejected(t, fleet, "json", encodeAs(t, "json", registerReq{cr.Token, map[string]string{"SerialNumber": "err-2"}}),
			errResp{400, "InvalidCertificateOwnershipToken", "Certificate ownership token has already been used."})
		if _, err := sim.Registry().DescribeThing("err-2"); err == nil {
			t.Error("the reused token created a thing")
		}
	})
	t.Run("expired token", func(t *testing.T) {
		cr := newCert(t)
		clk.Add(provisioning.TokenLifetime + time.Second)
		wantRejected(t, fleet, "json", encodeAs(t, "json", registerReq{cr.Token, map[string]string{"SerialNumber": "err-exp"}}),
			errResp{400, "InvalidCertificateOwnershipToken", "Certificate ownership token has expired."})
		// The next request sweeps the never-activated certificate away.
		newCert(t)
		if _, err := sim.Registry().DescribeCertificate(cr.CertificateID); err == nil {
			t.Error("the certificate of an expired token was not deleted")
		}
	})
	t.Run("malformed CSR", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		good := csrPEM(t, key)
		blk, _ := pem.Decode([]byte(good))
		tampered := append([]byte(nil), blk.Bytes...)
		tampered[len(tampered)-5] ^= 0xff // breaks the signature
		for name, csr := range map[string]string{
			"empty":     "",
			"not pem":   "hello",
			"garbage":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("junk")})),
			"signature": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})),
		} {
			t.Run(name, func(t *testing.T) {
				wantRejected(t, "$aws/certificates/create-from-csr", "json",
					encodeAs(t, "json", map[string]string{"certificateSigningRequest": csr}),
					errResp{StatusCode: 400, ErrorCode: "InvalidParameters"})
			})
		}
	})
	t.Run("bad payload", func(t *testing.T) {
		wantRejected(t, "$aws/certificates/create-from-csr", "json", []byte("{not json"),
			errResp{StatusCode: 400, ErrorCode: "InvalidPayload"})
		wantRejected(t, "$aws/certificates/create-from-csr", "cbor", []byte{0xff, 0x00},
			errResp{StatusCode: 400, ErrorCode: "InvalidPayload"})
	})
	t.Run("unknown template", func(t *testing.T) {
		cr := newCert(t)
		wantRejected(t, "$aws/provisioning-templates/nope/provision", "json", encodeAs(t, "json", registerReq{cr.Token, sn}),
			errResp{StatusCode: 404, ErrorCode: "ResourceNotFound"})
	})
}

func TestPreProvisioningHook(t *testing.T) {
	sim, _ := startSim(t)
	var seen provisioning.HookInput
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in provisioning.HookInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		seen = in
		allow := in.Parameters["SerialNumber"] == "allowed-1"
		_ = json.NewEncoder(w).Encode(provisioning.HookOutput{AllowProvisioning: allow, ParameterOverrides: map[string]string{"Location": "Berlin"}})
	}))
	t.Cleanup(hook.Close)
	body := `{"Parameters":{"SerialNumber":{"Type":"String"},"Location":{"Type":"String","Default":"WA"},"AWS::IoT::Certificate::Id":{"Type":"String"}},
	 "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"SerialNumber"},"AttributePayload":{"location":{"Ref":"Location"}}}},
	  "certificate":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"Active"}}},
	 "DeviceConfiguration":{"where":{"Fn::Sub":"in ${Location}"}}}`
	if _, err := sim.Registry().CreateProvisioningTemplate(registry.ProvisioningTemplate{
		Name: "hooked", Body: body, Enabled: true, RoleARN: "arn:aws:iam::123456789012:role/x",
		Hook: &registry.ProvisioningHook{TargetARN: hook.URL},
	}); err != nil {
		t.Fatal(err)
	}
	allowTemplate(t, sim, "hooked")
	claim := connectClaim(t, sim, "provision-claim-hook")
	base := "$aws/provisioning-templates/hooked/provision"
	for _, tc := range []struct {
		serial, outcome string
	}{{"refused-1", "rejected"}, {"allowed-1", "accepted"}} {
		_, b := claim.request("$aws/certificates/create", "json", nil)
		var cr createResp
		decodeAs(t, "json", b, &cr)
		outcome, b := claim.request(base, "json", encodeAs(t, "json", registerReq{cr.Token, map[string]string{"SerialNumber": tc.serial}}))
		if outcome != tc.outcome {
			t.Fatalf("%s: %s %s, want %s", tc.serial, outcome, b, tc.outcome)
		}
		if outcome == "rejected" {
			var e errResp
			decodeAs(t, "json", b, &e)
			if e.StatusCode != 403 || e.ErrorCode != "AccessDenied" {
				t.Errorf("refusal: %+v", e)
			}
			if c, _ := sim.Registry().DescribeCertificate(cr.CertificateID); c.Status != registry.StatusPendingActivation {
				t.Errorf("refused certificate is %s", c.Status)
			}
			continue
		}
		var rr registerResp
		decodeAs(t, "json", b, &rr)
		if diff := cmp.Diff(registerResp{map[string]string{"where": "in Berlin"}, "allowed-1"}, rr); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
		th, _ := sim.Registry().DescribeThing("allowed-1")
		if th.Attributes["location"] != "Berlin" {
			t.Errorf("hook override not applied: %+v", th.Attributes)
		}
		if seen.CertificateID != cr.CertificateID || seen.ClientID != "provision-claim-hook" || seen.TemplateARN == "" || seen.ClaimCertificateID == "" {
			t.Errorf("hook input: %+v", seen)
		}
	}
}

func TestAllowListHook(t *testing.T) {
	h := provisioning.AllowList("a", "b")
	for serial, want := range map[string]bool{"a": true, "b": true, "c": false, "": false} {
		out, err := h(context.Background(), provisioning.HookInput{Parameters: map[string]string{"SerialNumber": serial}})
		if err != nil || out.AllowProvisioning != want {
			t.Errorf("AllowList(%q) = %v, %v; want %v", serial, out.AllowProvisioning, err, want)
		}
	}
}

// TestClaimIsProvisioningOnly: the claim policy that iotsim attaches does
// not let the claim certificate use a thing's topics.
func TestClaimIsProvisioningOnly(t *testing.T) {
	sim, _ := startSim(t)
	claim := connectClaim(t, sim, "provision-claim-a")
	tok := claim.c.Subscribe("$aws/things/x/shadow/#", 1, func(mqtt.Client, mqtt.Message) {})
	tok.WaitTimeout(10 * time.Second)
	if st, ok := tok.(*mqtt.SubscribeToken); ok && tok.Error() == nil && st.Result()["$aws/things/x/shadow/#"] != 0x80 {
		t.Errorf("the claim subscribed to a thing's shadow: %v", st.Result())
	}
}
