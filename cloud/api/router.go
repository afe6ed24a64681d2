package api

import (
	"net/http"
	"net/url"
	"strings"
)

// Service families, by SigV4 signing name.
const (
	svcControl = "iot"
	svcData    = "iotdata"
	svcJobs    = "iot-jobs-data"
)

// family maps a credential-scope service to the route family it selects.
// The dev guide tells raw-HTTP users to sign shadow calls as
// "iotdevicegateway", so that name selects the data plane too. An unknown or
// empty service selects every family (path-only routing). botocore signed
// the control plane as "execute-api" before it switched to "iot" (aws-cli
// 2.9.19 still does), so both select it.
func family(service string) string {
	switch service {
	case "iot", "execute-api":
		return svcControl
	case "iotdata", "iotdevicegateway":
		return svcData
	case "iot-jobs-data":
		return svcJobs
	}
	return ""
}

type route struct {
	family string
	method string
	path   []string // literal segments, "{label}", or a final greedy "{label+}"
	op     string
	handle func(*Server, *call) error
}

func newRoute(fam, method, path, op string, h func(*Server, *call) error) route {
	return route{family: fam, method: method, path: strings.Split(strings.TrimPrefix(path, "/"), "/"), op: op, handle: h}
}

// routes is the operation table; each family's file adds its operations
// (op.route) in an init function.
var routes []route

// splitPath splits an escaped URL path on "/" and unescapes each segment, so
// that %2F inside a label stays inside it.
func splitPath(escaped string) ([]string, error) {
	if !strings.HasPrefix(escaped, "/") {
		return nil, invalid("The request path must start with /")
	}
	segs := strings.Split(escaped[1:], "/")
	for i, s := range segs {
		if !strings.Contains(s, "%") {
			continue
		}
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, invalid("The request path is not validly percent-encoded")
		}
		segs[i] = u
	}
	return segs, nil
}

// matchPath matches segs against pattern and returns the labels.
func matchPath(pattern, segs []string) (map[string]string, bool) {
	var labels map[string]string
	for i, p := range pattern {
		if i >= len(segs) {
			return nil, false
		}
		if !strings.HasPrefix(p, "{") {
			if segs[i] != p {
				return nil, false
			}
			continue
		}
		if labels == nil {
			labels = make(map[string]string, 1)
		}
		name := p[1 : len(p)-1]
		if greedy, ok := strings.CutSuffix(name, "+"); ok {
			labels[greedy] = strings.Join(segs[i:], "/")
			return labels, true
		}
		labels[name] = segs[i]
	}
	return labels, len(segs) == len(pattern)
}

// match finds the route for a request. service is the SigV4 scope's service
// ("" for an unsigned request). A path served under another method gives 405.
func match(service, method, escapedPath string) (*route, map[string]string, error) {
	segs, err := splitPath(escapedPath)
	if err != nil {
		return nil, nil, err
	}
	fam := family(service)
	pathSeen := false
	for i := range routes {
		rt := &routes[i]
		if fam != "" && rt.family != fam {
			continue
		}
		labels, ok := matchPath(rt.path, segs)
		if !ok {
			continue
		}
		pathSeen = true
		if rt.method == method {
			return rt, labels, nil
		}
	}
	if pathSeen {
		return nil, nil, errorf(http.StatusMethodNotAllowed, "MethodNotAllowedException",
			"The method %s is not allowed on this resource", method)
	}
	return nil, nil, errorf(http.StatusNotFound, "UnknownOperationException",
		"No operation serves %s %s", method, escapedPath)
}
