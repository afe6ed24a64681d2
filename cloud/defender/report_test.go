package defender

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"
)

const goodLong = `{
  "header": { "report_id": 1760000000123, "version": "1.0" },
  "metrics": {
    "listening_tcp_ports": { "ports": [ { "interface": "eth0", "port": 22 } ], "total": 1 },
    "listening_udp_ports": { "ports": [ { "interface": "wlan0", "port": 5353 } ], "total": 1 },
    "network_stats": { "bytes_in": 48211, "bytes_out": 20117, "packets_in": 311, "packets_out": 240 },
    "tcp_connections": {
      "established_connections": {
        "connections": [ { "local_interface": "wlan0", "local_port": 51724, "remote_addr": "52.1.2.3:8883" } ],
        "total": 1
      }
    }
  },
  "custom_metrics": {
    "cpu_temp_c": [ { "number": 61.5 } ],
    "fw_components": [ { "string_list": [ "agent-1.4.2", "kernel-6.6" ] } ]
  }
}`

const goodShort = `{
  "hed": { "rid": 1760000000123, "v": "1.0" },
  "met": {
    "tp": { "pts": [ { "if": "eth0", "pt": 22 } ], "t": 1 },
    "up": { "pts": [ { "if": "wlan0", "pt": 5353 } ], "t": 1 },
    "ns": { "bi": 48211, "bo": 20117, "pi": 311, "po": 240 },
    "tc": { "ec": { "cs": [ { "li": "wlan0", "lp": 51724, "rad": "52.1.2.3:8883" } ], "t": 1 } }
  },
  "cmet": {
    "cpu_temp_c": [ { "number": 61.5 } ],
    "fw_components": [ { "string_list": [ "agent-1.4.2", "kernel-6.6" ] } ]
  }
}`

func specMetrics() *DeviceMetrics {
	temp := 61.5
	return &DeviceMetrics{
		ReportID:     1760000000123,
		TCPPorts:     &PortsMetric{Ports: []int{22}, Total: 1},
		UDPPorts:     &PortsMetric{Ports: []int{5353}, Total: 1},
		NetworkStats: &NetworkStats{BytesIn: 48211, BytesOut: 20117, PacketsIn: 311, PacketsOut: 240},
		Established:  &ConnectionsMetric{RemoteAddrs: []string{"52.1.2.3"}, Total: 1},
		CustomMetrics: map[string]CustomMetric{
			"cpu_temp_c":    {Number: &temp},
			"fw_components": {StringList: []string{"agent-1.4.2", "kernel-6.6"}},
		},
	}
}

// toCBOR re-encodes a JSON document as CBOR with integer numbers.
func toCBOR(t testing.TB, js string) []byte {
	t.Helper()
	m, err := jsonGeneric([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cbor.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeReportAccepts(t *testing.T) {
	tests := []struct {
		name, format string
		payload      []byte
		want         *DeviceMetrics
	}{
		{"spec example, long names", FormatJSON, []byte(goodLong), specMetrics()},
		{"spec example, short names", FormatJSON, []byte(goodShort), specMetrics()},
		{"CBOR short names", FormatCBOR, toCBOR(t, goodShort), specMetrics()},
		{"CBOR long names", FormatCBOR, toCBOR(t, goodLong), specMetrics()},
		{"empty lists, total larger than the list", FormatJSON,
			[]byte(`{"header":{"report_id":5,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[],"total":3}}}`),
			&DeviceMetrics{ReportID: 5, TCPPorts: &PortsMetric{Ports: []int{}, Total: 3}}},
		{"custom metrics only", FormatJSON,
			[]byte(`{"header":{"report_id":6,"version":"1.0"},"custom_metrics":{"ips":[{"ip_list":["10.0.0.1"]}],"n":[{"number_list":[1,2]}]}}`),
			&DeviceMetrics{ReportID: 6, CustomMetrics: map[string]CustomMetric{"ips": {IPList: []string{"10.0.0.1"}}, "n": {NumberList: []float64{1, 2}}}}},
		{"integral float id", FormatJSON, []byte(`{"header":{"report_id":7.0,"version":"1.0"},"metrics":{}}`), &DeviceMetrics{ReportID: 7}},
		{"IPv6 remote address", FormatJSON,
			[]byte(`{"header":{"report_id":8,"version":"1.0"},"metrics":{"tcp_connections":{"established_connections":{"connections":[{"remote_addr":"[2001:db8::1]:443"}],"total":1}}}}`),
			&DeviceMetrics{ReportID: 8, Established: &ConnectionsMetric{RemoteAddrs: []string{"2001:db8::1"}, Total: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeReport(tt.format, tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeReportRejects(t *testing.T) {
	hdr := `"header":{"report_id":1,"version":"1.0"}`
	tests := []struct {
		name, format, payload, wantMsg string
	}{
		{"not JSON", FormatJSON, `{"header":`, "Malformed metrics report"},
		{"not UTF-8", FormatJSON, "{\"header\":\"\xff\"}", "Malformed metrics report"},
		{"trailing data", FormatJSON, `{` + hdr + `,"metrics":{}} {}`, "Malformed metrics report"},
		{"not an object", FormatJSON, `[1]`, "not an object"},
		{"not CBOR", FormatCBOR, "\xff\xff", "Malformed metrics report"},
		{"no header", FormatJSON, `{"metrics":{}}`, "Missing required field: header"},
		{"header not an object", FormatJSON, `{"header":1,"metrics":{}}`, "Invalid type for header"},
		{"no report id", FormatJSON, `{"header":{"version":"1.0"},"metrics":{}}`, "Missing required field: header.report_id"},
		{"report id zero", FormatJSON, `{"header":{"report_id":0,"version":"1.0"},"metrics":{}}`, "positive integer"},
		{"report id string", FormatJSON, `{"header":{"report_id":"1","version":"1.0"},"metrics":{}}`, "want an integer"},
		{"report id fraction", FormatJSON, `{"header":{"report_id":1.5,"version":"1.0"},"metrics":{}}`, "want an integer"},
		{"no version", FormatJSON, `{"header":{"report_id":1},"metrics":{}}`, "Missing required field: header.version"},
		{"wrong version", FormatJSON, `{"header":{"report_id":1,"version":"2.0"},"metrics":{}}`, `Unsupported report version "2.0"`},
		{"version as number", FormatJSON, `{"header":{"report_id":1,"version":1.0},"metrics":{}}`, "Unsupported report version"},
		{"neither metrics nor custom", FormatJSON, `{` + hdr + `}`, "neither metrics nor custom_metrics"},
		{"mixed names", FormatJSON, `{` + hdr + `,"met":{}}`, "mixes long and short"},
		{"both headers", FormatJSON, `{` + hdr + `,"hed":{"rid":1,"v":"1.0"},"metrics":{}}`, "mixes long and short"},
		{"port zero", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"ports":[{"port":0}],"total":1}}}`, "is not a port"},
		{"port too large", FormatJSON, `{` + hdr + `,"metrics":{"listening_udp_ports":{"ports":[{"port":65536}],"total":1}}}`, "is not a port"},
		{"ports not a list", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"ports":{},"total":1}}}`, "want an array"},
		{"ports missing", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"total":1}}}`, "Missing required field: metrics.listening_tcp_ports.ports"},
		{"negative total", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"ports":[],"total":-1}}}`, "is negative"},
		{"negative bytes", FormatJSON, `{` + hdr + `,"metrics":{"network_stats":{"bytes_in":-1,"bytes_out":0,"packets_in":0,"packets_out":0}}}`, "is negative"},
		{"bytes as string", FormatJSON, `{` + hdr + `,"metrics":{"network_stats":{"bytes_in":"1","bytes_out":0,"packets_in":0,"packets_out":0}}}`, "want an integer"},
		{"interface not a string", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"ports":[{"port":22,"interface":1}],"total":1}}}`, "want a string"},
		{"too many ports", FormatJSON, `{` + hdr + `,"metrics":{"listening_tcp_ports":{"ports":[` + strings.Repeat(`{"port":1},`, MaxListEntries) + `{"port":1}],"total":1}}}`, "Too many entries"},
		{"remote addr missing", FormatJSON, `{` + hdr + `,"metrics":{"tcp_connections":{"established_connections":{"connections":[{"local_port":1}],"total":1}}}}`, "Missing required field"},
		{"remote addr number", FormatJSON, `{` + hdr + `,"metrics":{"tcp_connections":{"established_connections":{"connections":[{"remote_addr":1}],"total":1}}}}`, "want a string"},
		{"remote addr no port", FormatJSON, `{` + hdr + `,"metrics":{"tcp_connections":{"established_connections":{"connections":[{"remote_addr":"1.2.3.4"}],"total":1}}}}`, "is not ip:port"},
		{"custom not an array", FormatJSON, `{` + hdr + `,"custom_metrics":{"x":{"number":1}}}`, "exactly one object"},
		{"custom two keys", FormatJSON, `{` + hdr + `,"custom_metrics":{"x":[{"number":1,"number_list":[]}]}}`, "exactly one of"},
		{"custom unknown key", FormatJSON, `{` + hdr + `,"custom_metrics":{"x":[{"float":1}]}}`, "Invalid key"},
		{"custom number string", FormatJSON, `{` + hdr + `,"custom_metrics":{"x":[{"number":"1"}]}}`, "want a number"},
		{"CBOR non-string keys", FormatCBOR, "\xa1\x01\x02", "Malformed metrics report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeReport(tt.format, []byte(tt.payload))
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want a *RejectError", err)
			}
			if rej.Code != ErrorCodeInvalidPayload || !strings.Contains(rej.Message, tt.wantMsg) {
				t.Errorf("rejection %q: %q, want code InvalidPayload and a message containing %q", rej.Code, rej.Message, tt.wantMsg)
			}
		})
	}
}

func TestParseTopic(t *testing.T) {
	for topic, want := range map[string][2]string{
		"$aws/things/box-1/defender/metrics/json": {"box-1", "json"},
		"$aws/things/box-1/defender/metrics/cbor": {"box-1", "cbor"},
		"$aws/things/box-1/defender/metrics/xml":  {"", ""},
		"$aws/things/box-1/shadow/update":         {"", ""},
	} {
		thing, format, _ := parseTopic(topic)
		if [2]string{thing, format} != want {
			t.Errorf("parseTopic(%s) = %s, %s; want %v", topic, thing, format, want)
		}
	}
}

func FuzzDecodeReportJSON(f *testing.F) {
	f.Add([]byte(goodLong))
	f.Add([]byte(goodShort))
	f.Add([]byte(`{"header":{"report_id":1,"version":"1.0"},"metrics":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeReport(FormatJSON, b)
		checkDecoded(t, m, err)
	})
}

func FuzzDecodeReportCBOR(f *testing.F) {
	f.Add(toCBOR(f, goodLong))
	f.Add(toCBOR(f, goodShort))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeReport(FormatCBOR, b)
		checkDecoded(t, m, err)
		_, _ = peekReportID(FormatCBOR, b)
	})
}

func checkDecoded(t *testing.T, m *DeviceMetrics, err error) {
	t.Helper()
	if err != nil {
		var rej *RejectError
		if !errors.As(err, &rej) || m != nil {
			t.Fatalf("err %v (%T), metrics %v", err, err, m)
		}
		return
	}
	if m.ReportID <= 0 {
		t.Fatalf("accepted report id %d", m.ReportID)
	}
	for _, p := range []*PortsMetric{m.TCPPorts, m.UDPPorts} {
		if p == nil {
			continue
		}
		for _, port := range p.Ports {
			if port < 1 || port > 65535 {
				t.Fatalf("accepted port %d", port)
			}
		}
	}
}

// jsonGeneric decodes JSON into plain values with CBOR-style numbers.
func jsonGeneric(b []byte) (any, error) {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbersToCBOR(v), nil
}

// numbersToCBOR turns json.Number into int64 or float64.
func numbersToCBOR(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbersToCBOR(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbersToCBOR(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
