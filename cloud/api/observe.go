package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/iotagent/iotagent/cloud/broker"
)

// Observer is iotsim's record of what watched client ids do at the
// protocol level (*broker.Broker), for `iotsim qualify` (iotsim only; AWS
// has no such API).
type Observer interface {
	Watch(clientID string) error
	Unwatch(clientID string) error
	Observe(clientID string) (broker.ClientObservation, error)
}

func init() {
	routes = append(routes,
		op[observeIn]{"IotsimWatchClient", svcControl, http.MethodPut, "/iotsim/observations/{clientId}", (*Server).watchClient, mapObserver}.route(),
		op[observeIn]{"IotsimGetObservation", svcControl, http.MethodGet, "/iotsim/observations/{clientId}", (*Server).getObservation, mapObserver}.route(),
		op[observeIn]{"IotsimUnwatchClient", svcControl, http.MethodDelete, "/iotsim/observations/{clientId}", (*Server).unwatchClient, mapObserver}.route(),
	)
}

// observeIn names the client id; the broker checks it.
type observeIn struct {
	ClientID string `uri:"clientId"`
}

func mapObserver(_ *observeIn, err error) error {
	switch {
	case errors.Is(err, broker.ErrNotWatched):
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "%s", err.Error())
	case errors.Is(err, broker.ErrTooManyWatches):
		return errorf(http.StatusConflict, "LimitExceededException", "%s", err.Error())
	case errors.Is(err, broker.ErrBadClientID):
		return invalid("%s", err.Error())
	}
	return err
}

func (s *Server) observer() (Observer, error) {
	if s.o.Observer == nil {
		return nil, internal("client observation")
	}
	return s.o.Observer, nil
}

// watchClient serves PUT /iotsim/observations/{clientId}: start recording.
func (s *Server) watchClient(_ *call, in *observeIn) (any, error) {
	o, err := s.observer()
	if err != nil {
		return nil, err
	}
	return nil, o.Watch(in.ClientID)
}

// getObservation serves GET /iotsim/observations/{clientId}.
func (s *Server) getObservation(_ *call, in *observeIn) (any, error) {
	o, err := s.observer()
	if err != nil {
		return nil, err
	}
	return o.Observe(in.ClientID)
}

// unwatchClient serves DELETE /iotsim/observations/{clientId}.
func (s *Server) unwatchClient(_ *call, in *observeIn) (any, error) {
	o, err := s.observer()
	if err != nil {
		return nil, err
	}
	return nil, o.Unwatch(in.ClientID)
}

// WatchClient makes a running iotsim record what clientID does (Observe).
func (c *Client) WatchClient(ctx context.Context, clientID string) error {
	return c.Call(ctx, svcControl, http.MethodPut, "/iotsim/observations/"+url.PathEscape(clientID), nil, nil, nil)
}

// Observe returns what a running iotsim recorded of a watched client id.
func (c *Client) Observe(ctx context.Context, clientID string) (broker.ClientObservation, error) {
	var out broker.ClientObservation
	err := c.Call(ctx, svcControl, http.MethodGet, "/iotsim/observations/"+url.PathEscape(clientID), nil, nil, &out)
	return out, err
}

// UnwatchClient stops the recording of clientID.
func (c *Client) UnwatchClient(ctx context.Context, clientID string) error {
	return c.Call(ctx, svcControl, http.MethodDelete, "/iotsim/observations/"+url.PathEscape(clientID), nil, nil, nil)
}
