package defender

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Report formats, the last segment of the metrics topic.
const (
	FormatJSON = "json"
	FormatCBOR = "cbor"
)

// Version is the report format version AWS accepts.
const Version = "1.0"

// MaxListEntries bounds every port and connection list in a report; the
// totals still count every entry found. AWS documents no limit; its
// samples cut lists to 50, iotsim accepts at least 100.
const MaxListEntries = 100

// Report is one metrics report. JSON uses the long key names, CBOR the short
// ones (shared/spec/defender.md §2.1).
type Report struct {
	Header        Header                   `json:"header" cbor:"hed"`
	Metrics       *Metrics                 `json:"metrics,omitempty" cbor:"met,omitempty"`
	CustomMetrics map[string][]CustomValue `json:"custom_metrics,omitempty" cbor:"cmet,omitempty"`
}

// Header identifies a report.
type Header struct {
	ReportID int64  `json:"report_id" cbor:"rid"`
	Version  string `json:"version" cbor:"v"`
}

// Metrics are the standard device-side metrics.
type Metrics struct {
	ListeningTCPPorts PortList       `json:"listening_tcp_ports" cbor:"tp"`
	ListeningUDPPorts PortList       `json:"listening_udp_ports" cbor:"up"`
	NetworkStats      NetworkStats   `json:"network_stats" cbor:"ns"`
	TCPConnections    TCPConnections `json:"tcp_connections" cbor:"tc"`
}

// PortList is a list of listening ports.
type PortList struct {
	Ports []Port `json:"ports" cbor:"pts"`
	Total int    `json:"total" cbor:"t"`
}

// Port is one listening port, with the interface of its local address when
// the socket is bound to one (not for wildcard binds).
type Port struct {
	Interface string `json:"interface,omitempty" cbor:"if,omitempty"`
	Port      int    `json:"port" cbor:"pt"`
}

// NetworkStats are counters summed over all interfaces, as deltas since the
// previous report.
type NetworkStats struct {
	BytesIn    uint64 `json:"bytes_in" cbor:"bi"`
	BytesOut   uint64 `json:"bytes_out" cbor:"bo"`
	PacketsIn  uint64 `json:"packets_in" cbor:"pi"`
	PacketsOut uint64 `json:"packets_out" cbor:"po"`
}

// TCPConnections holds the established connections.
type TCPConnections struct {
	Established Established `json:"established_connections" cbor:"ec"`
}

// Established is the list of established TCP connections.
type Established struct {
	Connections []Connection `json:"connections" cbor:"cs"`
	Total       int          `json:"total" cbor:"t"`
}

// Connection is one established TCP connection.
type Connection struct {
	LocalInterface string `json:"local_interface,omitempty" cbor:"li,omitempty"`
	LocalPort      int    `json:"local_port" cbor:"lp"`
	RemoteAddr     string `json:"remote_addr" cbor:"rad"` // "ip:port", "[v6]:port"
}

// CustomValue is the single object of a custom metric's array; exactly one
// field is set. Custom metrics have no short names.
type CustomValue struct {
	Number     *float64  `json:"number,omitempty" cbor:"number,omitempty"`
	NumberList []float64 `json:"number_list,omitempty" cbor:"number_list,omitempty"`
	StringList []string  `json:"string_list,omitempty" cbor:"string_list,omitempty"`
	IPList     []string  `json:"ip_list,omitempty" cbor:"ip_list,omitempty"`
}

// Number is a custom metric value holding one number.
func Number(v float64) []CustomValue { return []CustomValue{{Number: &v}} }

// Response is the service's answer on .../accepted or .../rejected.
type Response struct {
	ThingName     string         `json:"thingName" cbor:"thingName"`
	ReportID      int64          `json:"reportId" cbor:"reportId"`
	Status        string         `json:"status" cbor:"status"` // ACCEPTED or REJECTED
	StatusDetails *StatusDetails `json:"statusDetails,omitempty" cbor:"statusDetails,omitempty"`
	Timestamp     int64          `json:"timestamp" cbor:"timestamp"`
}

// StatusDetails carry AWS's reason for a rejection.
type StatusDetails struct {
	ErrorCode    string `json:"ErrorCode" cbor:"ErrorCode"`
	ErrorMessage string `json:"ErrorMessage" cbor:"ErrorMessage"`
}

var cborEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortCoreDeterministic, ShortestFloat: cbor.ShortestFloat16}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxNestedLevels: 16, MaxArrayElements: 4096, MaxMapPairs: 4096}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// Encode marshals r in format (FormatJSON or FormatCBOR).
func (r *Report) Encode(format string) ([]byte, error) {
	switch format {
	case FormatJSON:
		return json.Marshal(r)
	case FormatCBOR:
		return cborEnc.Marshal(r)
	}
	return nil, fmt.Errorf("encode report: %w: format %q", ErrInvalid, format)
}

// DecodeReport parses a report in format. It is the inverse of Encode (the
// agent's own round trip and tests); iotsim validates reports itself.
func DecodeReport(format string, b []byte) (*Report, error) {
	var r Report
	var err error
	switch format {
	case FormatJSON:
		err = json.Unmarshal(b, &r)
	case FormatCBOR:
		err = cborDec.Unmarshal(b, &r)
	default:
		return nil, fmt.Errorf("decode report: %w: format %q", ErrInvalid, format)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s report: %w", format, err)
	}
	return &r, nil
}

// DecodeResponse parses an accepted/rejected answer. A CBOR reporter accepts
// JSON answers too (AWS's CBOR answer format is unconfirmed).
func DecodeResponse(b []byte) (Response, error) {
	var r Response
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		if err := json.Unmarshal(b, &r); err != nil {
			return r, fmt.Errorf("decode response: %w", err)
		}
		return r, nil
	}
	if err := cborDec.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode response: %w", err)
	}
	return r, nil
}
