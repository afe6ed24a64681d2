package cloud_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// TestObservationREST drives the observation operations through the
// signed REST API, and their errors in AWS's words.
func TestObservationREST(t *testing.T) {
	sim := cloudtest.Start(t, "")
	c := sim.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := c.Observe(ctx, "box:1"); !api.IsCode(err, "ResourceNotFoundException") {
		t.Errorf("observe unwatched: %v, want ResourceNotFoundException", err)
	}
	if err := c.WatchClient(ctx, "box:1"); err != nil {
		t.Fatal(err)
	}
	o, err := c.Observe(ctx, "box:1")
	if err != nil || o.ClientID != "box:1" || o.Connected || o.Subscriptions == nil || o.ConnectAttempts == nil {
		t.Errorf("observe: %+v, %v", o, err)
	}
	if err := c.WatchClient(ctx, strings.Repeat("x", broker.MaxClientIDBytes+1)); !api.IsCode(err, "InvalidRequestException") {
		t.Errorf("watch a client id too long: %v, want InvalidRequestException", err)
	}
	for i := 1; i < broker.MaxWatches; i++ {
		if err := c.WatchClient(ctx, fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WatchClient(ctx, "one-more"); !api.IsCode(err, "LimitExceededException") {
		t.Errorf("watch %d: %v, want LimitExceededException", broker.MaxWatches+1, err)
	}
	if err := c.UnwatchClient(ctx, "box:1"); err != nil {
		t.Fatal(err)
	}
	if err := c.UnwatchClient(ctx, "box:1"); !api.IsCode(err, "ResourceNotFoundException") {
		t.Errorf("unwatch twice: %v, want ResourceNotFoundException", err)
	}
	if err := c.WatchClient(ctx, "one-more"); err != nil {
		t.Errorf("watch after an unwatch: %v", err)
	}
}
