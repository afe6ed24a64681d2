package broker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// mosquittoFiles registers thing with an ACTIVE certificate and writes the
// CA, certificate and key for the mosquitto command-line clients; it
// returns their TLS and connection arguments. Without mosquitto-clients the
// test is skipped (failed under CI=true).
func (e *env) mosquittoFiles(t *testing.T, thing string) []string {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mosquitto-clients not installed: %v", err)
		}
		t.Skipf("mosquitto-clients not installed: %v", err)
	}
	certPEM, keyPEM, err := e.ca.NewKeysAndCertificate(thing)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.reg.RegisterCertificate(certPEM, registry.StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateThing(thing, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.AttachThingPrincipal(thing, c.ID); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{pki.CACertFile: e.ca.CertPEM, "cert.pem": certPEM, "key.pem": keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, port, err := net.SplitHostPort(e.b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-h", host, "-p", port, "--cafile", filepath.Join(dir, pki.CACertFile),
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem")}
}

func runMosquitto(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestResumedSessionPacketIDs is issue 11 item 7: a persistent session gets
// QoS 1 messages while offline (the broker numbers them 1, 2, 3); when
// mosquitto_sub -c comes back and subscribes with packet id 1, the SUBSCRIBE
// must be granted (mochi answered 0x91, "packet identifier in use", which
// MQTT 3.1.1 does not define, and mosquitto_sub exited with "All
// subscription requests were denied") and the three messages delivered.
func TestResumedSessionPacketIDs(t *testing.T) {
	for _, version := range []string{"mqttv311", "mqttv5"} {
		t.Run(version, func(t *testing.T) {
			e := newEnv(t, allowAll{})
			conn := e.mosquittoFiles(t, "box-1")
			sub := append(conn, "-V", version, "-i", "box-1", "-c", "-q", "1", "-t", "t/x")
			if version == "mqttv5" {
				sub = append(sub, "-x", "3600") // session expiry: persistent
			}
			if out, err := runMosquitto(t, "mosquitto_sub", append(sub, "-E")...); err != nil {
				t.Fatalf("create the session: %v\n%s", err, out)
			}
			e.waitOffline(t, "box-1")
			for _, m := range []string{"m1", "m2", "m3"} {
				if err := e.b.Publish("t/x", []byte(m), 1); err != nil {
					t.Fatal(err)
				}
			}
			// -E: exit once the SUBSCRIBE is acknowledged; the queued
			// messages are resent before the SUBACK.
			out, err := runMosquitto(t, "mosquitto_sub", append(sub, "-E")...)
			if err != nil {
				t.Fatalf("resume the session: %v\n%s", err, out)
			}
			got := strings.Fields(out)
			slices.Sort(got) // AWS does not keep the order of resent messages
			if strings.Join(got, " ") != "m1 m2 m3" {
				t.Errorf("resumed session printed %q, want m1 m2 m3", out)
			}
			if n := e.b.Stats().ReasonCodesReplaced; n != 0 {
				t.Errorf("%d reason codes replaced", n)
			}
		})
	}
}

// TestDevicePacketIDsDoNotCancelDeliveries: a device's QoS 1 PUBLISH and
// UNSUBSCRIBE numbered like an unacknowledged delivery to it neither cancel
// the delivery (mochi forgot it on the PUBLISH's PUBACK, so it was never
// resent) nor are refused (UNSUBACK 0x91 without unsubscribing).
func TestDevicePacketIDsDoNotCancelDeliveries(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			e := newEnv(t, allowAll{})
			cert, _ := e.device("box-2")
			connect := func() *rawClient {
				t.Helper()
				c, err := e.dialRaw(e.b.Addrs()[0], &cert, version)
				if err != nil {
					t.Fatal(err)
				}
				pk := connectPacket("box-2", version, 60)
				pk.Connect.Clean = false
				if version == 5 {
					pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 3600, true
				}
				if ack, err := c.connect(pk); err != nil || ack.ReasonCode != 0 {
					t.Fatalf("connect: 0x%02x %v", ack.ReasonCode, err)
				}
				return c
			}
			// resent returns the payloads delivered before the SUBACK of a
			// new SUBSCRIBE (resent deliveries come first).
			resent := func(c *rawClient) []string {
				t.Helper()
				c.nextID = 100
				var got []string
				if err := c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 100,
					Filters: []packets.Subscription{{Filter: "t/y", Qos: 1}}}); err != nil {
					t.Fatal(err)
				}
				for {
					pk, err := c.read()
					if err != nil {
						t.Fatal(err)
					}
					switch pk.FixedHeader.Type {
					case packets.Publish:
						got = append(got, string(pk.Payload))
					case packets.Suback:
						if pk.ReasonCodes[0] != 1 {
							t.Fatalf("SUBACK 0x%02x", pk.ReasonCodes[0])
						}
						return got
					}
				}
			}

			c := connect()
			resent(c)
			c.conn.Close()
			e.waitOffline(t, "box-2")
			if err := e.b.Publish("t/y", []byte("queued"), 1); err != nil {
				t.Fatal(err)
			}

			c = connect()
			if got := resent(c); !slices.Equal(got, []string{"queued"}) {
				t.Fatalf("resent %q, want [queued]", got)
			}
			// The delivery is numbered 1 and left unacknowledged; the device
			// uses 1 for a PUBLISH and an UNSUBSCRIBE.
			if err := c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
				TopicName: "other/z", Payload: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			if ack, err := c.read(); err != nil || ack.FixedHeader.Type != packets.Puback || ack.PacketID != 1 || ack.ReasonCode != 0 {
				t.Fatalf("PUBACK %+v %v", ack, err)
			}
			if err := c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 1,
				Filters: []packets.Subscription{{Filter: "t/none"}}}); err != nil {
				t.Fatal(err)
			}
			ack, err := c.read()
			if err != nil || ack.FixedHeader.Type != packets.Unsuback || ack.PacketID != 1 {
				t.Fatalf("UNSUBACK %+v %v", ack, err)
			}
			if version == 5 && !slices.Equal(ack.ReasonCodes, []byte{0x11}) { // no subscription existed
				t.Errorf("UNSUBACK codes %x, want 11", ack.ReasonCodes)
			}
			c.conn.Close()
			e.waitOffline(t, "box-2")

			c = connect()
			if got := resent(c); !slices.Equal(got, []string{"queued"}) {
				t.Errorf("after the device's packets numbered like it, the delivery was resent as %q, want [queued]", got)
			}
		})
	}
}

// waitOffline waits until the broker has seen clientID's connection end
// (its session kept, or gone for a clean session).
func (e *env) waitOffline(t *testing.T, clientID string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		cl, ok := e.b.srv.Clients.Get(clientID)
		if !ok || cl.Closed() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still connected", clientID)
		}
		time.Sleep(time.Millisecond)
	}
}
