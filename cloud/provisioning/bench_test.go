package provisioning_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

// BenchmarkProvisionCSR is iotsim's side of one device's fleet
// provisioning by CreateCertificateFromCsr then RegisterThing with the
// default template, with the database on disk (t.TempDir) as iotsim's:
// what bounds iotsim's completions per second, without MQTT, TLS or the
// device. Run with -cpu 1,32 for devices one at a time and 32 at once.
func BenchmarkProvisionCSR(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "sim.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ca, err := pki.LoadOrCreateCA(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.New(db, "us-east-1", "123456789012", nil)
	if err := provisioning.Setup(reg, provisioning.RegistryPolicies(reg), cloud.ProvisioningTemplate, ""); err != nil {
		b.Fatal(err)
	}
	var replies sync.Map // client id -> last reply
	respond := func(clientID, topic string, payload []byte) error {
		replies.Store(clientID, payload)
		return nil
	}
	svc := provisioning.New(reg, provisioning.PKIIssuer{CA: ca}, respond, nil,
		provisioning.Options{Policies: provisioning.RegistryPolicies(reg)})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(&testing.T{}, key)})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serial := fmt.Sprintf("bench-%d", n.Add(1))
			p := &broker.Principal{ClientID: serial, CertificateID: "claim"}
			// The same CSR each time: every certificate still differs (serial number).
			svc.HandleRequest(p, "$aws/certificates/create-from-csr/json", csr)
			v, _ := replies.Load(serial)
			var cr createResp
			if err := json.Unmarshal(v.([]byte), &cr); err != nil || cr.Token == "" {
				b.Fatalf("create-from-csr: %s", v)
			}
			req, _ := json.Marshal(registerReq{cr.Token, map[string]string{"SerialNumber": serial}})
			svc.HandleRequest(p, "$aws/provisioning-templates/"+cloud.ProvisioningTemplate+"/provision/json", req)
			v, _ = replies.Load(serial)
			var rr registerResp
			if err := json.Unmarshal(v.([]byte), &rr); err != nil || rr.ThingName != serial {
				b.Fatalf("RegisterThing: %s", v)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "devices/s")
}
