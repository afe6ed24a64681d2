package cloud_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// TestFaultsREST drives the fault operations through the signed REST API,
// with faults given at start as `iotsim serve --faults` gives them.
func TestFaultsREST(t *testing.T) {
	sim := cloudtest.StartWith(t, cloud.Options{Faults: []broker.Fault{{ID: "boot", Kind: broker.FaultDrop, Packet: "pingresp", Count: 1}}})
	c := sim.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := c.AddFault(ctx, broker.Fault{Kind: broker.FaultDelay, Packet: "puback", Client: "box-*", Topic: "alarms/#",
		Delay: broker.Duration(time.Second), Duration: broker.Duration(time.Hour), Probability: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "f1" || !st.Active || st.Expires == nil || st.Injected != 0 || time.Duration(st.Delay) != time.Second || st.Probability != 0.25 {
		t.Errorf("added %+v", st)
	}
	var apiErr *api.APIError
	_, err = c.AddFault(ctx, broker.Fault{Kind: broker.FaultDrop, Packet: "pubrec"})
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != "InvalidRequestException" || !strings.Contains(apiErr.Message, `packet "pubrec"`) {
		t.Errorf("invalid fault: %v, want 400 InvalidRequestException naming the packet", err)
	}
	_, err = c.AddFault(ctx, broker.Fault{ID: "boot", Kind: broker.FaultDuplicate})
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Message, `id "boot" is taken`) {
		t.Errorf("duplicate id: %v", err)
	}
	r, err := c.ListFaults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Faults) != 2 || r.Faults[0].ID != "boot" || r.Faults[1].ID != "f1" || r.Injected != 0 || len(r.Events) != 0 {
		t.Errorf("list = %+v", r)
	}
	if err := c.RemoveFault(ctx, "ghost"); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("remove ghost: %v, want 404", err)
	}
	if err := c.RemoveFault(ctx, "boot"); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ClearFaults(ctx); err != nil || n != 1 {
		t.Errorf("clear = %d, %v; want 1", n, err)
	}
	if r, err := c.ListFaults(ctx); err != nil || len(r.Faults) != 0 {
		t.Errorf("after clear: %+v, %v", r, err)
	}

	// Unsigned requests are refused, as every REST operation's are.
	unsigned := &api.Client{BaseURL: sim.Endpoint().HTTPEndpoint}
	if _, err := unsigned.AddFault(ctx, broker.Fault{Kind: broker.FaultDuplicate}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("unsigned add: %v, want 403", err)
	}
	if r := sim.Broker().Faults(); len(r.Faults) != 0 {
		t.Errorf("an unsigned request added a fault: %+v", r)
	}
}
