package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/iotagent/iotagent/cloud/broker"
)

// Faults is iotsim's fault injector (*broker.Broker): the faults the
// broker injects, added and removed at run time (iotsim only; AWS has no
// such API).
type Faults interface {
	AddFault(f broker.Fault) (broker.FaultStatus, error)
	RemoveFault(id string) error
	ClearFaults() int
	Faults() broker.FaultReport
}

func init() {
	routes = append(routes,
		op[addFaultIn]{"IotsimAddFault", svcControl, http.MethodPost, "/iotsim/faults", (*Server).addFault, nil}.route(),
		op[struct{}]{"IotsimListFaults", svcControl, http.MethodGet, "/iotsim/faults", (*Server).listFaults, nil}.route(),
		op[struct{}]{"IotsimClearFaults", svcControl, http.MethodDelete, "/iotsim/faults", (*Server).clearFaults, nil}.route(),
		op[faultIn]{"IotsimDeleteFault", svcControl, http.MethodDelete, "/iotsim/faults/{faultId}", (*Server).deleteFault, nil}.route(),
	)
}

func (s *Server) faults() (Faults, error) {
	if s.o.Faults == nil {
		return nil, internal("fault injection")
	}
	return s.o.Faults, nil
}

// fromFaults maps the broker's fault sentinels to AWS-style errors.
func fromFaults(err error) error {
	switch {
	case errors.Is(err, broker.ErrInvalidFault):
		return invalid("%s", strings.TrimPrefix(err.Error(), broker.ErrInvalidFault.Error()+": "))
	case errors.Is(err, broker.ErrNoFault):
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "%s", err.Error())
	}
	return err
}

// addFaultIn is IotsimAddFault's request: the fault itself.
type addFaultIn struct {
	broker.Fault
}

// addFault serves POST /iotsim/faults.
func (s *Server) addFault(_ *call, in *addFaultIn) (any, error) {
	f, err := s.faults()
	if err != nil {
		return nil, err
	}
	st, err := f.AddFault(in.Fault)
	if err != nil {
		return nil, fromFaults(err)
	}
	return st, nil
}

// listFaults serves GET /iotsim/faults: the faults, the latest injections
// and the total.
func (s *Server) listFaults(_ *call, _ *struct{}) (any, error) {
	f, err := s.faults()
	if err != nil {
		return nil, err
	}
	return f.Faults(), nil
}

// clearFaults serves DELETE /iotsim/faults.
func (s *Server) clearFaults(_ *call, _ *struct{}) (any, error) {
	f, err := s.faults()
	if err != nil {
		return nil, err
	}
	return struct {
		Cleared int `json:"cleared"`
	}{f.ClearFaults()}, nil
}

type faultIn struct {
	ID string `uri:"faultId"`
}

// deleteFault serves DELETE /iotsim/faults/{faultId}.
func (s *Server) deleteFault(_ *call, in *faultIn) (any, error) {
	f, err := s.faults()
	if err != nil {
		return nil, err
	}
	return nil, fromFaults(f.RemoveFault(in.ID))
}

// AddFault adds a fault to a running iotsim and returns it as added.
func (c *Client) AddFault(ctx context.Context, f broker.Fault) (broker.FaultStatus, error) {
	var out broker.FaultStatus
	err := c.Call(ctx, svcControl, http.MethodPost, "/iotsim/faults", nil, f, &out)
	return out, err
}

// ListFaults returns a running iotsim's faults and latest injections.
func (c *Client) ListFaults(ctx context.Context) (broker.FaultReport, error) {
	var out broker.FaultReport
	err := c.Call(ctx, svcControl, http.MethodGet, "/iotsim/faults", nil, nil, &out)
	return out, err
}

// ClearFaults removes every fault and returns how many there were.
func (c *Client) ClearFaults(ctx context.Context) (int, error) {
	var out struct {
		Cleared int `json:"cleared"`
	}
	err := c.Call(ctx, svcControl, http.MethodDelete, "/iotsim/faults", nil, nil, &out)
	return out.Cleared, err
}

// RemoveFault removes one fault.
func (c *Client) RemoveFault(ctx context.Context, id string) error {
	return c.Call(ctx, svcControl, http.MethodDelete, "/iotsim/faults/"+url.PathEscape(id), nil, nil, nil)
}
