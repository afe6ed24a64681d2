package provisioning_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/registry"
)

// newCertFor has d (any connection allowed to provision) make a
// certificate from a CSR and returns its id, token and TLS pair.
func newCertFor(t *testing.T, d *device) (createResp, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	outcome, b := d.request("$aws/certificates/create-from-csr", "json",
		encodeAs(t, "json", map[string]string{"certificateSigningRequest": csrPEM(t, key)}))
	if outcome != "accepted" {
		t.Fatalf("CreateCertificateFromCsr: %s %s", outcome, b)
	}
	var cr createResp
	decodeAs(t, "json", b, &cr)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(cr.CertificatePEM), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return cr, pair
}

func connectThing(t *testing.T, sim *cloud.Sim, name string) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(name)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d, err := connect(t, sim, name, pair)
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return d
}

// TestNoTakeoverThroughProvisioning is issue 11 item 1: device box-2, and
// the claim certificate, register SerialNumber=box-3 with the default
// template; both are refused with AWS's rejected shape, the new
// certificates stay unattached and inactive and cannot reach box-3's
// shadow. box-3's own connection may still rotate its certificate, and a
// thing whose certificate was deactivated may be provisioned again.
func TestNoTakeoverThroughProvisioning(t *testing.T) {
	sim, _ := startSim(t)
	box2 := connectThing(t, sim, "box-2")
	box3 := connectThing(t, sim, "box-3")
	box3Certs, _ := sim.Registry().ThingPrincipals("box-3")

	for name, d := range map[string]*device{"device box-2": box2, "claim": connectClaim(t, sim, "provision-SN-9")} {
		t.Run(name, func(t *testing.T) {
			cr, pair := newCertFor(t, d)
			outcome, b := d.request(fleet, "json", encodeAs(t, "json", registerReq{Token: cr.Token, Params: map[string]string{"SerialNumber": "box-3"}}))
			var e errResp
			decodeAs(t, "json", b, &e)
			if outcome != "rejected" || e.StatusCode != 403 || e.ErrorCode != "AccessDenied" || e.ErrorMessage == "" {
				t.Fatalf("RegisterThing SerialNumber=box-3: %s %s, want rejected 403 AccessDenied", outcome, b)
			}
			if got, _ := sim.Registry().ThingPrincipals("box-3"); len(got) != len(box3Certs) {
				t.Errorf("box-3's certificates: %v, want only %v", got, box3Certs)
			}
			c, err := sim.Registry().DescribeCertificate(cr.CertificateID)
			if err != nil || c.Status == registry.StatusActive || len(c.Things) != 0 {
				t.Errorf("the refused certificate: %+v, %v; want inactive and attached to nothing", c, err)
			}
			if _, err := connect(t, sim, "box-3", pair); err == nil {
				t.Error("the refused certificate connected as box-3")
			}
		})
	}
	if doc, err := sim.Shadows().Get("box-3", "", nil); err == nil {
		t.Errorf("box-3's shadow was written: %s", doc)
	}

	t.Run("rotation over the thing's own connection", func(t *testing.T) {
		cr, pair := newCertFor(t, box3)
		outcome, b := box3.request(fleet, "json", encodeAs(t, "json", registerReq{Token: cr.Token, Params: map[string]string{"SerialNumber": "box-3"}}))
		if outcome != "accepted" {
			t.Fatalf("rotation: %s %s", outcome, b)
		}
		box3.c.Disconnect(0)
		if _, err := connect(t, sim, "box-3", pair); err != nil {
			t.Errorf("connect with the rotated certificate: %v", err)
		}
	})

	t.Run("again after the old certificate is deactivated", func(t *testing.T) {
		old, _ := sim.Registry().ThingPrincipals("box-2")
		for _, id := range old {
			if err := sim.Registry().UpdateCertificate(id, registry.StatusInactive); err != nil {
				t.Fatal(err)
			}
		}
		claim := connectClaim(t, sim, "provision-box-2")
		cr, _ := newCertFor(t, claim)
		if outcome, b := claim.request(fleet, "json", encodeAs(t, "json", registerReq{Token: cr.Token, Params: map[string]string{"SerialNumber": "box-2"}})); outcome != "accepted" {
			t.Errorf("re-provisioning box-2: %s %s", outcome, b)
		}
	})
}

// The claim policy allows only the client ids the agent provisions with.
func TestClaimClientIDs(t *testing.T) {
	sim, _ := startSim(t)
	connectThing(t, sim, "box-1").c.Disconnect(0)
	connectClaim(t, sim, "provision-SN-1")
	for _, id := range []string{"box-1", "claim", "provision"} {
		cert, err := tls.LoadX509KeyPair(sim.Endpoint().ClaimCert, sim.Endpoint().ClaimKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := connect(t, sim, id, cert); err == nil {
			t.Errorf("the claim certificate connected as %q", id)
		}
	}
}
