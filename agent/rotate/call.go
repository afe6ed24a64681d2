package rotate

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

type message struct {
	topic   string
	payload []byte
}

// call sends one JSON request on base/json and waits for base/json/accepted
// or …/rejected, sending it again after each ResponseTimeout, up to
// Attempts times.
func (r *rotation) call(ctx context.Context, apiName, base string, req, resp any) error {
	accepted, rejected := base+"/json/accepted", base+"/json/rejected"
	ch := make(chan message, 8)
	h := func(topic string, payload []byte) {
		select {
		case ch <- message{topic, append([]byte(nil), payload...)}:
		default:
		}
	}
	for _, topic := range []string{accepted, rejected} {
		if err := r.t.Subscribe(topic, 1, h); err != nil {
			return fmt.Errorf("rotate: %s: subscribe: %w", apiName, err)
		}
	}
	sw, waits := r.t.(interface{ WaitSubscribed(context.Context) error })
	if waits {
		if err := sw.WaitSubscribed(ctx); err != nil {
			return fmt.Errorf("rotate: %s: subscribe: %w", apiName, err)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("rotate: %s: encode: %w", apiName, err)
	}
	for attempt := range r.o.Attempts {
		if w, ok := r.t.(interface{ WaitConnected(context.Context) error }); ok {
			if err := w.WaitConnected(ctx); err != nil {
				return fmt.Errorf("rotate: %s: wait for the connection: %w", apiName, err)
			}
		}
		if err := r.t.Publish(ctx, base+"/json", 1, body); err != nil {
			return fmt.Errorf("rotate: %s: publish: %w", apiName, err)
		}
		wait := r.o.ResponseTimeout
		if !waits && attempt == 0 && r.o.Attempts > 1 {
			// The subscriptions may not be in place yet and the first
			// answer lost: do not wait long for it.
			wait /= 4
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("rotate: %s: %w", apiName, ctx.Err())
		case <-timer.C:
			continue
		case m := <-ch:
			timer.Stop()
			if m.topic == rejected {
				rej := &RejectedError{API: apiName}
				if err := json.Unmarshal(m.payload, rej); err != nil {
					return fmt.Errorf("rotate: %s: %w: unreadable rejection: %v", apiName, ErrInvalidResponse, err)
				}
				return rej
			}
			if err := json.Unmarshal(m.payload, resp); err != nil {
				return fmt.Errorf("rotate: %s: %w: %v", apiName, ErrInvalidResponse, err)
			}
			return nil
		}
	}
	return fmt.Errorf("rotate: %s: %w after %d attempts", apiName, ErrNoResponse, r.o.Attempts)
}

func parseCert(s string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// certificateID is AWS's certificate id: hex SHA-256 of the DER.
func certificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
