package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
)

// alarmKey names one alarm: the agent stamps each with its sensor and a
// Unix second, and the run raises at most one alarm per sensor a second.
type alarmKey struct {
	sensor string
	ts     int64
}

// observer is a connection of its own to iotsim, as the AWS IoT console's
// test client would be, that counts what the device publishes. No fault is
// aimed at it.
type observer struct {
	c         mqtt.Client
	mu        sync.Mutex
	alarms    map[alarmKey]int // deliveries of each alarm
	odd       int              // alarm messages without a sensor and timestamp
	telemetry atomic.Int64
	warnings  atomic.Int64
	lost      atomic.Int64 // observer connections lost (should stay 0)
}

// observerPolicy lets the observer read the device's topics.
const observerPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// observe makes the observer's thing, certificate and policy through the
// REST API and subscribes it to the device's alarm, telemetry and warning
// topics.
func observe(ctx context.Context, ep cloud.Endpoint, cli *api.Client, name, thing string) (*observer, error) {
	if err := cli.CreateThing(ctx, name); err != nil {
		return nil, fmt.Errorf("observer: CreateThing: %w", err)
	}
	_, arn, certPEM, keyPEM, err := cli.CreateKeysAndCertificate(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("observer: CreateKeysAndCertificate: %w", err)
	}
	if err := cli.AttachThingPrincipal(ctx, name, arn); err != nil {
		return nil, fmt.Errorf("observer: AttachThingPrincipal: %w", err)
	}
	if err := cli.CreatePolicy(ctx, name, observerPolicy); err != nil {
		return nil, fmt.Errorf("observer: CreatePolicy: %w", err)
	}
	if err := cli.AttachPolicy(ctx, name, arn); err != nil {
		return nil, fmt.Errorf("observer: AttachPolicy: %w", err)
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, fmt.Errorf("observer: key pair: %w", err)
	}
	caPEM, err := os.ReadFile(ep.RootCA)
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("observer: %s holds no certificate", ep.RootCA)
	}
	o := &observer{alarms: map[alarmKey]int{}}
	filters := map[string]byte{"alarms/" + thing: 1, "telemetry/" + thing: 1, "warnings/" + thing: 1}
	subscribed := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + ep.MQTTEndpoint).SetClientID(name).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).
		SetKeepAlive(30 * time.Second).SetOrderMatters(false).
		SetConnectionLostHandler(func(mqtt.Client, error) { o.lost.Add(1) }).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.SubscribeMultiple(filters, o.onMessage)
			go func() {
				tok.Wait()
				select {
				case subscribed <- tok.Error():
				default:
				}
			}()
		})
	o.c = mqtt.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		o.c.Disconnect(0)
		return nil, fmt.Errorf("observer: connect to %s: %v", ep.MQTTEndpoint, tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			o.c.Disconnect(0)
			return nil, fmt.Errorf("observer: subscribe: %w", err)
		}
	case <-time.After(15 * time.Second):
		o.c.Disconnect(0)
		return nil, fmt.Errorf("observer: no SUBACK in 15 s")
	}
	return o, nil
}

func (o *observer) onMessage(_ mqtt.Client, m mqtt.Message) {
	switch topicKind(m.Topic()) {
	case "alarms":
		var a struct {
			Sensor    string `json:"sensor"`
			Timestamp *int64 `json:"timestamp"`
		}
		o.mu.Lock()
		if json.Unmarshal(m.Payload(), &a) != nil || a.Sensor == "" || a.Timestamp == nil {
			o.odd++
		} else {
			o.alarms[alarmKey{a.Sensor, *a.Timestamp}]++
		}
		o.mu.Unlock()
	case "telemetry":
		o.telemetry.Add(1)
	case "warnings":
		o.warnings.Add(1)
	}
}

func topicKind(topic string) string {
	for i := range len(topic) {
		if topic[i] == '/' {
			return topic[:i]
		}
	}
	return topic
}

// count returns how many times the alarm k arrived.
func (o *observer) count(k alarmKey) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.alarms[k]
}

// tally counts, over keys, the alarms delivered at least once and the
// extra copies.
func (o *observer) tally(keys []alarmKey) (delivered, duplicates int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if n := o.alarms[k]; n > 0 {
			delivered++
			duplicates += n - 1
		}
	}
	return delivered, duplicates
}

// unexpected counts alarm messages the run did not raise (or could not
// read).
func (o *observer) unexpected(raised map[alarmKey]bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.odd
	for k, c := range o.alarms {
		if !raised[k] {
			n += c
		}
	}
	return n
}

func (o *observer) close() { o.c.Disconnect(250) }
