package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefenderSection(t *testing.T) {
	tests := []struct {
		name      string
		section   string
		want      Defender
		wantPaths []string // Validate problems; nil: valid
		parseErr  bool
	}{
		{"absent: defaults", ``, Defender{Format: "json", IntervalS: 300}, nil, false},
		{"cbor every 5 s", `,"defender":{"enabled":true,"format":"cbor","interval_s":5}`, Defender{Enabled: true, Format: "cbor", IntervalS: 5}, nil, false},
		{"partial keeps defaults", `,"defender":{"enabled":true}`, Defender{Enabled: true, Format: "json", IntervalS: 300}, nil, false},
		{"bad format and interval", `,"defender":{"format":"xml","interval_s":4}`, Defender{Format: "xml", IntervalS: 4},
			[]string{"defender.format", "defender.interval_s"}, false},
		{"unknown key", `,"defender":{"interval":300}`, Defender{}, nil, true},
		{"wrong type", `,"defender":{"enabled":"yes"}`, Defender{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			data := `{"thing_name":"box-1","mqtt":{"endpoint":"127.0.0.1","root_ca":"` + c.MQTT.RootCA + `"}` + tt.section + `}`
			got, err := Parse([]byte(data), "/etc/iotagent")
			if tt.parseErr {
				if err == nil {
					t.Fatal("Parse accepted it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Defender); diff != "" {
				t.Errorf("Defender (-want +got):\n%s", diff)
			}
			c.Defender = got.Defender
			err = c.Validate()
			if diff := cmp.Diff(tt.wantPaths, paths(err)); diff != "" {
				t.Errorf("Validate paths (-want +got):\n%s", diff)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("err %v is not ErrInvalid", err)
			}
		})
	}
}
