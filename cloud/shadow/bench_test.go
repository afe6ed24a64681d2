package shadow

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/store"
)

// chocolateBox is a typical reported state of the chocolate-box profile.
const chocolateBox = `{"alarm":{"armed":true,"triggered":false,"since":1719855498},
	"sensors":{"bme280":{"temperature":21.37,"humidity":48.2,"pressure":1013.25},
		"motion":{"state":false,"last":1719855400},"lid":{"open":false,"count":17}},
	"outputs":{"led":"off","buzzer":false},"telemetry":{"interval":30},
	"fw":{"version":"1.4.2","slot":"b"},"log_level":"info","rgb":[128,128,128]}`

func BenchmarkMerge(b *testing.B) {
	stored := jsObj(b, chocolateBox)
	patch := jsObj(b, `{"sensors":{"bme280":{"temperature":21.5,"humidity":47.9},"lid":{"open":true,"count":18}},"alarm":{"triggered":true},"rgb":[255,0,0]}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = Merge(stored, patch)
	}
}

func BenchmarkDelta(b *testing.B) {
	desired := jsObj(b, `{"alarm":{"armed":true},"outputs":{"led":"on","buzzer":false},"telemetry":{"interval":60},"log_level":"debug","rgb":[128,128,128]}`)
	reported := jsObj(b, chocolateBox)
	b.ReportAllocs()
	for b.Loop() {
		_ = Delta(desired, reported)
	}
}

func BenchmarkUpdate(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "sim.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc := New(db, func(string, []byte) {}, time.Now)
	if _, err := svc.Update("box1", "", []byte(`{"state":{"desired":{"alarm":{"armed":true},"telemetry":{"interval":30}},"reported":`+chocolateBox+`}}`)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		p := fmt.Sprintf(`{"state":{"reported":{"sensors":{"bme280":{"temperature":%d.5,"humidity":47.9},"lid":{"count":%d}}}},"clientToken":"tok-%d"}`, 20+i%5, i, i)
		if _, err := svc.Update("box1", "", []byte(p)); err != nil {
			b.Fatal(err)
		}
	}
}
