package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/iotagent/iotagent/cloud/shadow"
)

func init() {
	mapShadow := func(_ *shadowIn, err error) error { return fromShadow(err) }
	routes = append(routes,
		op[shadowIn]{"GetThingShadow", svcData, http.MethodGet, "/things/{thingName}/shadow",
			func(s *Server, c *call, in *shadowIn) (any, error) { return s.shadowCall(in, Shadows.Get, nil) }, mapShadow}.route(),
		op[shadowIn]{"UpdateThingShadow", svcData, http.MethodPost, "/things/{thingName}/shadow",
			func(s *Server, c *call, in *shadowIn) (any, error) { return s.shadowCall(in, Shadows.Update, c.body) }, mapShadow}.route(),
		op[shadowIn]{"DeleteThingShadow", svcData, http.MethodDelete, "/things/{thingName}/shadow",
			func(s *Server, c *call, in *shadowIn) (any, error) { return s.shadowCall(in, Shadows.Delete, nil) }, mapShadow}.route(),
		op[thingIn]{"ListNamedShadowsForThing", svcData, http.MethodGet, "/api/things/shadow/ListNamedShadowsForThing/{thingName}",
			(*Server).listNamedShadows, func(_ *thingIn, err error) error { return fromShadow(err) }}.route(),
		op[publishIn]{"Publish", svcData, http.MethodPost, "/topics/{topic+}", (*Server).publish, nil}.route(),
	)
}

// shadowIn is a shadow operation's target: {thingName} and ?name=.
type shadowIn struct {
	Thing string  `uri:"thingName" check:"thing"`
	Name  *string `query:"name"`
}

func (in *shadowIn) validate() error {
	if in.Name != nil {
		return checkShadowName(*in.Name)
	}
	return nil
}

// thingIn is the input of operations on one thing.
type thingIn struct {
	Thing string `uri:"thingName" check:"thing"`
}

type shadowOp func(Shadows, string, string, []byte) ([]byte, error)

// shadowCall serves GetThingShadow (GET), UpdateThingShadow (POST, the raw
// update document as body) and DeleteThingShadow (DELETE) on
// /things/{thingName}/shadow?name=.
func (s *Server) shadowCall(in *shadowIn, op shadowOp, payload []byte) (any, error) {
	if s.o.Shadows == nil {
		return nil, internal("The shadow service")
	}
	name := ""
	if in.Name != nil {
		name = *in.Name
	}
	doc, err := op(s.o.Shadows, in.Thing, name, payload)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(doc), nil
}

// listNamedShadows serves ListNamedShadowsForThing:
// GET /api/things/shadow/ListNamedShadowsForThing/{thingName}.
func (s *Server) listNamedShadows(c *call, in *thingIn) (any, error) {
	if s.o.Shadows == nil {
		return nil, internal("The shadow service")
	}
	names, err := s.o.Shadows.ListNamed(in.Thing)
	var se *shadow.Error
	if errors.As(err, &se) && se.Code == 404 {
		names, err = nil, nil // an unknown thing has no named shadows
	}
	if err != nil {
		return nil, err
	}
	names = slices.Clone(names)
	slices.Sort(names)
	start, end, next, err := page(len(names), c.query, "nextToken", "pageSize", 25, 100)
	if err != nil {
		return nil, err
	}
	return struct {
		Results   []string `json:"results"`
		NextToken string   `json:"nextToken,omitempty"`
		Timestamp int64    `json:"timestamp"`
	}{append([]string{}, names[start:end]...), next, s.now().Unix()}, nil
}

type publishIn struct {
	Topic  string `uri:"topic"`
	QoS    int64  `query:"qos"`
	Retain bool   `query:"retain"`
}

func (in *publishIn) validate() error {
	if in.QoS < 0 {
		return validation(strconv.FormatInt(in.QoS, 10), "qos", "Member must have value greater than or equal to 0")
	}
	if in.QoS > 1 {
		return validation(strconv.FormatInt(in.QoS, 10), "qos", "Member must have value less than or equal to 1")
	}
	return checkTopic(in.Topic, in.Retain)
}

// publish serves Publish: POST /topics/{topic}?qos=&retain=, the payload as body.
func (s *Server) publish(c *call, in *publishIn) (any, error) {
	if len(c.body) > 128*1024 {
		return nil, errorf(413, "RequestEntityTooLargeException", "The payload exceeds the maximum size allowed")
	}
	if s.o.Publish == nil {
		return nil, internal("Publishing")
	}
	if err := s.o.Publish(in.Topic, c.body, byte(in.QoS), in.Retain); err != nil {
		return nil, fmt.Errorf("publish to %q: %w", in.Topic, err)
	}
	return nil, nil
}
