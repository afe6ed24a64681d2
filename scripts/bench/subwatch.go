package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud"
)

// observerName is the thing whose connection reads iotsim's lifecycle
// events for the bench.
const observerName = "bench-observer"

// observerPolicy lets the observer read every topic, lifecycle events
// included (the device policy allows only a thing's own topics).
const observerPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// subEvent is one subscribed lifecycle event.
type subEvent struct {
	at     time.Time
	topics []string
}

// subWatch records the topics a client subscribes to, from iotsim's
// $aws/events/subscriptions/subscribed/CLIENT events, read over MQTT by a
// connection of its own.
type subWatch struct {
	c    *mclient
	done chan struct{}
	mu   sync.Mutex
	evs  []subEvent
}

// watchSubscriptions connects an observer to sim and subscribes it to the
// subscription events of clientID.
func watchSubscriptions(ctx context.Context, sim *cloud.Sim, clientID string) (*subWatch, error) {
	certPEM, keyPEM, err := sim.CreateThing(observerName)
	if err != nil {
		return nil, err
	}
	ids, err := sim.Registry().ThingPrincipals(observerName)
	if err != nil || len(ids) == 0 {
		return nil, fmt.Errorf("observer certificate: %v", err)
	}
	cert, err := sim.Registry().DescribeCertificate(ids[0])
	if err != nil {
		return nil, err
	}
	if _, err := sim.Registry().CreatePolicy(observerName, observerPolicy); err != nil {
		return nil, fmt.Errorf("observer policy: %w", err)
	}
	if err := sim.Registry().AttachPolicy(observerName, cert.ARN); err != nil {
		return nil, fmt.Errorf("observer policy: %w", err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c, err := dialMQTT(ctx, sim.MQTTAddrs()[0], sim.CA().Pool(), kp, observerName, 1200)
	if err != nil {
		return nil, fmt.Errorf("observer connect: %w", err)
	}
	if err := c.subscribe(10*time.Second, "$aws/events/subscriptions/subscribed/"+clientID); err != nil {
		c.close()
		return nil, fmt.Errorf("observer subscribe: %w", err)
	}
	w := &subWatch{c: c, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			_, payload, err := c.await(time.Now().Add(24*time.Hour), nil)
			if err != nil {
				return
			}
			var ev struct {
				Topics []string `json:"topics"`
			}
			if json.Unmarshal(payload, &ev) != nil {
				continue
			}
			w.mu.Lock()
			w.evs = append(w.evs, subEvent{at: time.Now(), topics: ev.Topics})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// since returns every topic subscribed to at or after t.
func (w *subWatch) since(t time.Time) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, ev := range w.evs {
		if !ev.at.Before(t) {
			for _, tp := range ev.topics {
				out[tp] = true
			}
		}
	}
	return out
}

func (w *subWatch) close() {
	w.c.close()
	<-w.done
}
