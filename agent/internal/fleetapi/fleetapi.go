// Package fleetapi is the device side of AWS IoT's fleet provisioning MQTT
// API (CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterThing),
// shared by first-boot provisioning (agent/provision) and certificate
// rotation (agent/rotate): one request, its accepted or rejected answer,
// resent on silence.
package fleetapi

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

var (
	// ErrNoResponse: no answer came after every attempt.
	ErrNoResponse = errors.New("no response")
	// ErrInvalidResponse: an answer could not be used.
	ErrInvalidResponse = errors.New("invalid response")
	// ErrNotSent marks a Call that failed before its request was first
	// published: the service cannot have seen it.
	ErrNotSent = errors.New("request not sent")
)

// Transport is the MQTT connection; *transport.Client satisfies it.
type Transport interface {
	Subscribe(filter string, qos byte, h func(topic string, payload []byte)) error
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
}

// RejectedError is a …/rejected answer.
type RejectedError struct {
	API          string `json:"-" cbor:"-"` // CreateKeysAndCertificate, CreateCertificateFromCsr or RegisterThing
	StatusCode   int    `json:"statusCode" cbor:"statusCode"`
	ErrorCode    string `json:"errorCode" cbor:"errorCode"`
	ErrorMessage string `json:"errorMessage" cbor:"errorMessage"`
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("%s rejected: %d %s: %s", e.API, e.StatusCode, e.ErrorCode, e.ErrorMessage)
}

// Retryable reports whether trying again later may succeed (429 and 5xx);
// other rejections are permanent until something changes.
func (e *RejectedError) Retryable() bool { return e.StatusCode == 429 || e.StatusCode >= 500 }

// Options shape a Call.
type Options struct {
	Format          string        // "json" or "cbor"
	ResponseTimeout time.Duration // the wait for each answer
	Attempts        int           // how many times the request is sent
}

type message struct {
	topic   string
	payload []byte
}

// Call publishes req on base/FORMAT and decodes the answer from
// base/FORMAT/accepted into resp, or returns the *RejectedError of
// …/rejected. A request with no answer is sent again after each
// ResponseTimeout, up to Attempts times. Transports that can wait for
// their subscriptions (WaitSubscribed) and their connection
// (WaitConnected) are waited on, so that no answer is lost.
func Call(ctx context.Context, t Transport, o Options, apiName, base string, req, resp any) error {
	f := o.Format
	accepted, rejected := base+"/"+f+"/accepted", base+"/"+f+"/rejected"
	ch := make(chan message, 8)
	h := func(topic string, payload []byte) {
		select {
		case ch <- message{topic, append([]byte(nil), payload...)}:
		default:
		}
	}
	for _, topic := range []string{accepted, rejected} {
		if err := t.Subscribe(topic, 1, h); err != nil {
			return fmt.Errorf("%s: subscribe: %w (%w)", apiName, err, ErrNotSent)
		}
	}
	sw, waits := t.(interface{ WaitSubscribed(context.Context) error })
	if waits {
		if err := sw.WaitSubscribed(ctx); err != nil {
			return fmt.Errorf("%s: subscribe: %w (%w)", apiName, err, ErrNotSent)
		}
	}
	body, err := marshal(f, req)
	if err != nil {
		return fmt.Errorf("%s: encode: %w (%w)", apiName, err, ErrNotSent)
	}
	for attempt := range o.Attempts {
		if w, ok := t.(interface{ WaitConnected(context.Context) error }); ok {
			if err := w.WaitConnected(ctx); err != nil {
				if attempt == 0 {
					return fmt.Errorf("%s: wait for the connection: %w (%w)", apiName, err, ErrNotSent)
				}
				return fmt.Errorf("%s: wait for the connection: %w", apiName, err)
			}
		}
		if err := t.Publish(ctx, base+"/"+f, 1, body); err != nil {
			return fmt.Errorf("%s: publish: %w", apiName, err)
		}
		wait := o.ResponseTimeout
		if !waits && attempt == 0 && o.Attempts > 1 {
			// The subscriptions may not be in place yet and the first
			// answer lost: do not wait long for it.
			wait /= 4
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: %w", apiName, ctx.Err())
		case <-timer.C:
			continue
		case m := <-ch:
			timer.Stop()
			if m.topic == rejected {
				rej := &RejectedError{API: apiName}
				if err := unmarshal(f, m.payload, rej); err != nil {
					return fmt.Errorf("%s: %w: rejected with an unreadable payload: %v", apiName, ErrInvalidResponse, err)
				}
				return rej
			}
			if err := unmarshal(f, m.payload, resp); err != nil {
				return fmt.Errorf("%s: %w: %v", apiName, ErrInvalidResponse, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: %w after %d attempts", apiName, ErrNoResponse, o.Attempts)
}

func marshal(f string, v any) ([]byte, error) {
	if f == "cbor" {
		return cbor.Marshal(v)
	}
	return json.Marshal(v)
}

func unmarshal(f string, b []byte, v any) error {
	if f == "cbor" {
		return cbor.Unmarshal(b, v)
	}
	return json.Unmarshal(b, v)
}

// ParseCert parses the first PEM certificate in s.
func ParseCert(s string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// PublicKeysEqual reports whether a and b are the same public key.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
