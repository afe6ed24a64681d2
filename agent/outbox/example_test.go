package outbox_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/outbox"
)

func Example() {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "agent.db"), 0o600, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ob, err := outbox.Open(db, outbox.Options{MaxMessages: 2}, nil)
	if err != nil {
		log.Fatal(err)
	}
	ob.Append("dt/pi/telemetry", []byte(`{"t":21.5}`), outbox.Telemetry)
	ob.Append("dt/pi/alarm", []byte(`{"door":"open"}`), outbox.Alarm)
	ob.Append("dt/pi/telemetry", []byte(`{"t":21.7}`), outbox.Telemetry) // full: the oldest telemetry goes

	msgs, _ := ob.Peek(10)
	for _, m := range msgs {
		fmt.Println(m.ID, m.Class, string(m.Payload))
	}
	ob.Ack(msgs[0].ID) // after its PUBACK
	fmt.Printf("%+v\n", ob.Stats())
	// Output:
	// 2 alarm {"door":"open"}
	// 3 telemetry {"t":21.7}
	// {Len:1 Bytes:25 Dropped:1 DroppedTelemetry:1 DroppedAlarm:0 Corrupt:0 DroppedWarning:0 Memory:0}
}
