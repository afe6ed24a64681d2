package api

import (
	"errors"
	"fmt"
	"slices"

	"github.com/iotagent/iotagent/cloud/shadow"
)

// shadowTarget reads and validates {thingName} and ?name=.
func (c *call) shadowTarget() (thing, name string, err error) {
	thing = c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return "", "", err
	}
	if c.query.Has("name") {
		name = c.query.Get("name")
		if err := checkShadowName(name); err != nil {
			return "", "", err
		}
	}
	return thing, name, nil
}

type shadowOp func(Shadows, string, string, []byte) ([]byte, error)

func (s *Server) shadowCall(c *call, op shadowOp, payload []byte) error {
	thing, name, err := c.shadowTarget()
	if err != nil {
		return err
	}
	if s.o.Shadows == nil {
		return internal("The shadow service")
	}
	doc, err := op(s.o.Shadows, thing, name, payload)
	if err != nil {
		return fromShadow(err)
	}
	return writeRaw(c.w, doc)
}

// getThingShadow serves GetThingShadow: GET /things/{thingName}/shadow.
func (s *Server) getThingShadow(c *call) error {
	return s.shadowCall(c, Shadows.Get, nil)
}

// updateThingShadow serves UpdateThingShadow: POST /things/{thingName}/shadow
// with the raw update document as body.
func (s *Server) updateThingShadow(c *call) error {
	return s.shadowCall(c, Shadows.Update, c.body)
}

// deleteThingShadow serves DeleteThingShadow: DELETE /things/{thingName}/shadow.
func (s *Server) deleteThingShadow(c *call) error {
	return s.shadowCall(c, Shadows.Delete, nil)
}

// listNamedShadows serves ListNamedShadowsForThing:
// GET /api/things/shadow/ListNamedShadowsForThing/{thingName}.
func (s *Server) listNamedShadows(c *call) error {
	thing := c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	if s.o.Shadows == nil {
		return internal("The shadow service")
	}
	names, err := s.o.Shadows.ListNamed(thing)
	var se *shadow.Error
	if errors.As(err, &se) && se.Code == 404 {
		names, err = nil, nil // an unknown thing has no named shadows
	}
	if err != nil {
		return fromShadow(err)
	}
	names = slices.Clone(names)
	slices.Sort(names)
	start, end, next, err := page(len(names), c.query, "nextToken", "pageSize", 25, 100)
	if err != nil {
		return err
	}
	return writeJSON(c.w, struct {
		Results   []string `json:"results"`
		NextToken string   `json:"nextToken,omitempty"`
		Timestamp int64    `json:"timestamp"`
	}{append([]string{}, names[start:end]...), next, s.now().Unix()})
}

// publish serves Publish: POST /topics/{topic}?qos=&retain=, the payload as body.
func (s *Server) publish(c *call) error {
	topic := c.labels["topic"]
	qos, err := intParam(c.query, "qos", 0, 1, 0)
	if err != nil {
		return err
	}
	retain, err := boolParam(c.query, "retain")
	if err != nil {
		return err
	}
	if err := checkTopic(topic, retain); err != nil {
		return err
	}
	if len(c.body) > 128*1024 {
		return errorf(413, "RequestEntityTooLargeException", "The payload exceeds the maximum size allowed")
	}
	if s.o.Publish == nil {
		return internal("Publishing")
	}
	if err := s.o.Publish(topic, c.body, byte(qos), retain); err != nil {
		return fmt.Errorf("publish to %q: %w", topic, err)
	}
	return writeRaw(c.w, []byte("{}"))
}
