package broker

import (
	"fmt"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkConnect measures a full mutual-TLS handshake plus CONNECT/CONNACK
// (registry lookup, authorization, lifecycle event) and DISCONNECT.
func BenchmarkConnect(b *testing.B) {
	e := newEnv(b, nil)
	cert, _ := e.device("bench")
	addr := e.b.Addrs()[0]
	b.ReportAllocs()
	for b.Loop() {
		c, err := e.dialRaw(addr, &cert, 4)
		if err != nil {
			b.Fatal(err)
		}
		ack, err := c.connect(connectPacket("bench", 4, 60))
		if err != nil || ack.ReasonCode != 0 {
			b.Fatalf("connect: %v %v", ack.ReasonCode, err)
		}
		if err := c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}}); err != nil {
			b.Fatal(err)
		}
		c.conn.Close()
	}
}

// BenchmarkPublishFanout measures one QoS 0 device publish delivered to 10
// subscribers, each delivery passing the Receive check and AWS matching.
// With no fault added, fault injection costs one atomic load per write and
// per packet read.
func BenchmarkPublishFanout(b *testing.B) { benchmarkPublishFanout(b, nil) }

// BenchmarkPublishFanoutFaultElsewhere is BenchmarkPublishFanout while a
// fault aimed at another client is active: every write is parsed.
func BenchmarkPublishFanoutFaultElsewhere(b *testing.B) {
	benchmarkPublishFanout(b, &Fault{Kind: FaultDrop, Packet: "publish", Client: "someone-else"})
}

func benchmarkPublishFanout(b *testing.B, f *Fault) {
	const subscribers = 10
	e := newEnv(b, allowAll{})
	if f != nil {
		if _, err := e.b.AddFault(*f); err != nil {
			b.Fatal(err)
		}
	}
	got := make(chan struct{}, subscribers*64)
	for i := range subscribers {
		id := fmt.Sprintf("sub%d", i)
		cert, _ := e.device(id)
		c := e.rawConnected(cert, id)
		if _, err := c.subscribe(0, "fan/+/data"); err != nil {
			b.Fatal(err)
		}
		_ = c.conn.SetDeadline(timeZero)
		go func() {
			for {
				if _, err := c.nextPublish(); err != nil {
					return
				}
				got <- struct{}{}
			}
		}()
	}
	pubCert, _ := e.device("pub")
	pub := e.rawConnected(pubCert, "pub")
	_ = pub.conn.SetDeadline(timeZero)
	payload := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.publish("fan/x/data", payload, 0, false); err != nil {
			b.Fatal(err)
		}
		for range subscribers {
			<-got
		}
	}
}
