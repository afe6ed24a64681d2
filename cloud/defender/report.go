package defender

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Report formats: the last level of the metrics topic.
const (
	FormatJSON = "json"
	FormatCBOR = "cbor"
)

// Validation limits.
const (
	// MaxListEntries is the most entries iotsim takes in one port or
	// connection list (AWS documents no limit; its samples send up to 50).
	MaxListEntries = 512
	// MaxReportBytes is the broker's message limit.
	MaxReportBytes = 128 * 1024
	maxThingName   = 128
)

// ErrorCodeInvalidPayload is AWS's error code for a report it rejects.
const ErrorCodeInvalidPayload = "InvalidPayload"

// RejectError is why a report was rejected: Code and Message go into
// statusDetails.
type RejectError struct {
	Code    string
	Message string
}

func (e *RejectError) Error() string { return e.Code + ": " + e.Message }

func reject(format string, args ...any) *RejectError {
	return &RejectError{Code: ErrorCodeInvalidPayload, Message: fmt.Sprintf(format, args...)}
}

// errMalformed is the message for a payload that does not parse.
const errMalformed = "Malformed metrics report"

// DeviceMetrics is a validated report, normalised from either naming
// style. Absent blocks are nil.
type DeviceMetrics struct {
	ReportID      int64                   `json:"reportId"`
	TCPPorts      *PortsMetric            `json:"listeningTcpPorts,omitempty"`
	UDPPorts      *PortsMetric            `json:"listeningUdpPorts,omitempty"`
	NetworkStats  *NetworkStats           `json:"networkStats,omitempty"`
	Established   *ConnectionsMetric      `json:"establishedConnections,omitempty"`
	CustomMetrics map[string]CustomMetric `json:"customMetrics,omitempty"`
}

// PortsMetric is a listening port list.
type PortsMetric struct {
	Ports []int `json:"ports"`
	Total int64 `json:"total"`
}

// NetworkStats are the counters of a report (deltas).
type NetworkStats struct {
	BytesIn, BytesOut, PacketsIn, PacketsOut int64
}

// ConnectionsMetric is the established connection list.
type ConnectionsMetric struct {
	RemoteAddrs []string `json:"remoteAddrs"`
	Total       int64    `json:"total"`
}

// CustomMetric is one custom metric value; one field is set.
type CustomMetric struct {
	Number     *float64  `json:"number,omitempty"`
	NumberList []float64 `json:"numberList,omitempty"`
	StringList []string  `json:"stringList,omitempty"`
	IPList     []string  `json:"ipList,omitempty"`
}

var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DefaultMapType:   reflect.TypeOf(map[string]any(nil)),
		MaxNestedLevels:  16,
		MaxArrayElements: 4096,
		MaxMapPairs:      4096,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthAllowed,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// DecodeReport parses and validates a report in format. Any failure is a
// *RejectError.
func DecodeReport(format string, payload []byte) (*DeviceMetrics, error) {
	if len(payload) > MaxReportBytes {
		return nil, reject("Report is larger than %d bytes", MaxReportBytes)
	}
	var root any
	switch format {
	case FormatJSON:
		if !utf8.Valid(payload) {
			return nil, reject("%s: not valid UTF-8", errMalformed)
		}
		d := json.NewDecoder(strings.NewReader(string(payload)))
		d.UseNumber()
		if err := d.Decode(&root); err != nil {
			return nil, reject("%s: %v", errMalformed, err)
		}
		if d.More() {
			return nil, reject("%s: data after the report", errMalformed)
		}
	case FormatCBOR:
		if err := cborDec.Unmarshal(payload, &root); err != nil {
			return nil, reject("%s: %v", errMalformed, err)
		}
	default:
		return nil, reject("Unsupported report format %q", format)
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, reject("%s: the report is not an object", errMalformed)
	}
	return validate(obj)
}

// names maps the long key names to the short ones.
type names struct {
	header, reportID, version, metrics, tcp, udp, ports, port, iface, total,
	netStats, bytesIn, bytesOut, packetsIn, packetsOut, tcpConns, established,
	connections, remoteAddr, localPort, localIface, custom string
}

var (
	long = names{"header", "report_id", "version", "metrics", "listening_tcp_ports", "listening_udp_ports",
		"ports", "port", "interface", "total", "network_stats", "bytes_in", "bytes_out", "packets_in", "packets_out",
		"tcp_connections", "established_connections", "connections", "remote_addr", "local_port", "local_interface",
		"custom_metrics"}
	short = names{"hed", "rid", "v", "met", "tp", "up", "pts", "pt", "if", "t", "ns", "bi", "bo", "pi", "po",
		"tc", "ec", "cs", "rad", "lp", "li", "cmet"}
)

func validate(root map[string]any) (*DeviceMetrics, error) {
	_, hasLong := root[long.header]
	_, hasShort := root[short.header]
	n := long
	switch {
	case hasLong && hasShort:
		return nil, reject("Report mixes long and short key names")
	case hasShort:
		n = short
	case !hasLong:
		return nil, reject("Missing required field: header")
	}
	if _, ok := root[other(n).metrics]; ok {
		return nil, reject("Report mixes long and short key names")
	}
	if _, ok := root[other(n).custom]; ok {
		return nil, reject("Report mixes long and short key names")
	}
	hdr, err := object(root, n.header, "")
	if err != nil {
		return nil, err
	}
	out := &DeviceMetrics{}
	id, err := integer(hdr, n.reportID, n.header, true)
	if err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, reject("Invalid value for %s.%s: must be a positive integer", n.header, n.reportID)
	}
	out.ReportID = id
	v, ok := hdr[n.version]
	if !ok {
		return nil, reject("Missing required field: %s.%s", n.header, n.version)
	}
	if s, ok := v.(string); !ok || s != "1.0" {
		return nil, reject("Unsupported report version %s: want \"1.0\"", describe(v))
	}
	_, hasMet := root[n.metrics]
	_, hasCustom := root[n.custom]
	if !hasMet && !hasCustom {
		return nil, reject("Report has neither %s nor %s", n.metrics, n.custom)
	}
	if hasMet {
		if err := validateMetrics(root, n, out); err != nil {
			return nil, err
		}
	}
	if hasCustom {
		cm, err := object(root, n.custom, "")
		if err != nil {
			return nil, err
		}
		if out.CustomMetrics, err = validateCustom(cm, n.custom); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func other(n names) names {
	if n == long {
		return short
	}
	return long
}

func validateMetrics(root map[string]any, n names, out *DeviceMetrics) error {
	met, err := object(root, n.metrics, "")
	if err != nil {
		return err
	}
	for _, pl := range []struct {
		key string
		dst **PortsMetric
	}{{n.tcp, &out.TCPPorts}, {n.udp, &out.UDPPorts}} {
		if _, ok := met[pl.key]; !ok {
			continue
		}
		path := n.metrics + "." + pl.key
		o, err := object(met, pl.key, n.metrics)
		if err != nil {
			return err
		}
		pm := &PortsMetric{Ports: []int{}}
		list, err := array(o, n.ports, path)
		if err != nil {
			return err
		}
		for i, e := range list {
			ep := fmt.Sprintf("%s.%s[%d]", path, n.ports, i)
			eo, ok := e.(map[string]any)
			if !ok {
				return reject("Invalid type for %s: want an object", ep)
			}
			p, err := integer(eo, n.port, ep, true)
			if err != nil {
				return err
			}
			if p < 1 || p > 65535 {
				return reject("Invalid value for %s.%s: %d is not a port (1-65535)", ep, n.port, p)
			}
			if err := optString(eo, n.iface, ep); err != nil {
				return err
			}
			pm.Ports = append(pm.Ports, int(p))
		}
		if pm.Total, err = count(o, n.total, path); err != nil {
			return err
		}
		*pl.dst = pm
	}
	if _, ok := met[n.netStats]; ok {
		path := n.metrics + "." + n.netStats
		o, err := object(met, n.netStats, n.metrics)
		if err != nil {
			return err
		}
		ns := &NetworkStats{}
		for _, f := range []struct {
			key string
			dst *int64
		}{{n.bytesIn, &ns.BytesIn}, {n.bytesOut, &ns.BytesOut}, {n.packetsIn, &ns.PacketsIn}, {n.packetsOut, &ns.PacketsOut}} {
			if *f.dst, err = count(o, f.key, path); err != nil {
				return err
			}
		}
		out.NetworkStats = ns
	}
	if _, ok := met[n.tcpConns]; ok {
		path := n.metrics + "." + n.tcpConns
		tc, err := object(met, n.tcpConns, n.metrics)
		if err != nil {
			return err
		}
		if _, ok := tc[n.established]; ok {
			path += "." + n.established
			ec, err := object(tc, n.established, path)
			if err != nil {
				return err
			}
			cm := &ConnectionsMetric{RemoteAddrs: []string{}}
			list, err := array(ec, n.connections, path)
			if err != nil {
				return err
			}
			for i, e := range list {
				ep := fmt.Sprintf("%s.%s[%d]", path, n.connections, i)
				eo, ok := e.(map[string]any)
				if !ok {
					return reject("Invalid type for %s: want an object", ep)
				}
				ra, ok := eo[n.remoteAddr]
				if !ok {
					return reject("Missing required field: %s.%s", ep, n.remoteAddr)
				}
				s, ok := ra.(string)
				if !ok {
					return reject("Invalid type for %s.%s: want a string \"ip:port\"", ep, n.remoteAddr)
				}
				ap, err := netip.ParseAddrPort(s)
				if err != nil {
					return reject("Invalid value for %s.%s: %q is not ip:port", ep, n.remoteAddr, truncate(s, 64))
				}
				if _, ok := eo[n.localPort]; ok {
					lp, err := integer(eo, n.localPort, ep, true)
					if err != nil {
						return err
					}
					if lp < 0 || lp > 65535 {
						return reject("Invalid value for %s.%s: %d is not a port", ep, n.localPort, lp)
					}
				}
				if err := optString(eo, n.localIface, ep); err != nil {
					return err
				}
				cm.RemoteAddrs = append(cm.RemoteAddrs, ap.Addr().Unmap().String())
			}
			if cm.Total, err = count(ec, n.total, path); err != nil {
				return err
			}
			out.Established = cm
		}
	}
	return nil
}

func validateCustom(cm map[string]any, path string) (map[string]CustomMetric, error) {
	out := make(map[string]CustomMetric, len(cm))
	for name, v := range cm {
		p := path + "." + truncate(name, 64)
		if name == "" || len(name) > 128 {
			return nil, reject("Invalid custom metric name %q", truncate(name, 64))
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != 1 {
			return nil, reject("Invalid value for %s: want an array of exactly one object", p)
		}
		o, ok := arr[0].(map[string]any)
		if !ok || len(o) != 1 {
			return nil, reject("Invalid value for %s: want one object with exactly one of number, number_list, string_list, ip_list", p)
		}
		var m CustomMetric
		for k, val := range o {
			switch k {
			case "number":
				f, ok := toFloat(val)
				if !ok {
					return nil, reject("Invalid type for %s.number: want a number", p)
				}
				m.Number = &f
			case "number_list":
				l, ok := val.([]any)
				if !ok || len(l) > MaxListEntries {
					return nil, reject("Invalid type for %s.number_list: want an array of at most %d numbers", p, MaxListEntries)
				}
				m.NumberList = []float64{}
				for _, e := range l {
					f, ok := toFloat(e)
					if !ok {
						return nil, reject("Invalid type for %s.number_list: want numbers", p)
					}
					m.NumberList = append(m.NumberList, f)
				}
			case "string_list", "ip_list":
				l, ok := val.([]any)
				if !ok || len(l) > MaxListEntries {
					return nil, reject("Invalid type for %s.%s: want an array of at most %d strings", p, k, MaxListEntries)
				}
				ss := []string{}
				for _, e := range l {
					s, ok := e.(string)
					if !ok {
						return nil, reject("Invalid type for %s.%s: want strings", p, k)
					}
					ss = append(ss, s)
				}
				if k == "ip_list" {
					m.IPList = ss
				} else {
					m.StringList = ss
				}
			default:
				return nil, reject("Invalid key %q in %s: want number, number_list, string_list or ip_list", truncate(k, 32), p)
			}
		}
		out[name] = m
	}
	return out, nil
}

func object(m map[string]any, key, parent string) (map[string]any, error) {
	o, ok := m[key].(map[string]any)
	if !ok {
		return nil, reject("Invalid type for %s: want an object", join(parent, key))
	}
	return o, nil
}

func array(m map[string]any, key, parent string) ([]any, error) {
	v, ok := m[key]
	if !ok {
		return nil, reject("Missing required field: %s", join(parent, key))
	}
	a, ok := v.([]any)
	if !ok {
		return nil, reject("Invalid type for %s: want an array", join(parent, key))
	}
	if len(a) > MaxListEntries {
		return nil, reject("Too many entries in %s: %d, at most %d", join(parent, key), len(a), MaxListEntries)
	}
	return a, nil
}

// integer reads an integer (a float with an integral value is taken too:
// AWS's behaviour for floats is unconfirmed).
func integer(m map[string]any, key, parent string, required bool) (int64, error) {
	v, ok := m[key]
	if !ok {
		if required {
			return 0, reject("Missing required field: %s", join(parent, key))
		}
		return 0, nil
	}
	var n int64
	switch x := v.(type) {
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			f, ferr := x.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
				return 0, reject("Invalid type for %s: want an integer", join(parent, key))
			}
			i = int64(f)
		}
		n = i
	case uint64:
		if x > math.MaxInt64 {
			return 0, reject("Invalid value for %s: too large", join(parent, key))
		}
		n = int64(x)
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<62 {
			return 0, reject("Invalid type for %s: want an integer", join(parent, key))
		}
		n = int64(x)
	default:
		return 0, reject("Invalid type for %s: want an integer, got %s", join(parent, key), describe(v))
	}
	return n, nil
}

// count reads a required integer that must not be negative.
func count(m map[string]any, key, parent string) (int64, error) {
	n, err := integer(m, key, parent, true)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, reject("Invalid value for %s: %d is negative", join(parent, key), n)
	}
	return n, nil
}

func optString(m map[string]any, key, parent string) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	if _, ok := v.(string); !ok {
		return reject("Invalid type for %s: want a string", join(parent, key))
	}
	return nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case uint64:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	}
	return 0, false
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", truncate(x, 32))
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case json.Number:
		return x.String()
	}
	return fmt.Sprintf("%v", v)
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// errBadTopic is returned by parseTopic.
var errBadTopic = errors.New("not a defender metrics topic")

// parseTopic splits $aws/things/T/defender/metrics/F.
func parseTopic(topic string) (thing, format string, err error) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return "", "", errBadTopic
	}
	thing, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", errBadTopic
	}
	format, ok = strings.CutPrefix(rest, "defender/metrics/")
	if !ok || (format != FormatJSON && format != FormatCBOR) {
		return "", "", errBadTopic
	}
	return thing, format, nil
}
