package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"os/signal"

	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/agent/transport"
)

// The agent's wiring: the certificate's key is any crypto.Signer (a TPM
// key or a file key); telemetry goes through the outbox, shadow requests
// through Publish from OnConnect.
func Example() {
	var (
		cert  tls.Certificate // from the key store
		roots *x509.CertPool  // Amazon Root CA 1, or iotsim's root
		ob    *outbox.Outbox  // outbox.Open on the agent's bbolt file
		log   = slog.Default()
	)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var c *transport.Client
	c, err := transport.New(transport.Options{
		Broker:      "abc123-ats.iot.eu-west-1.amazonaws.com:443",
		ServerName:  "abc123-ats.iot.eu-west-1.amazonaws.com",
		ALPN:        true,
		RootCAs:     roots,
		Certificate: cert,
		ClientID:    "pi-RPI-0042",
		Outbox:      ob,
		Logger:      log,
		OnConnect: func(ctx context.Context) {
			// Resync after every connect: the session may be new.
			_ = c.Publish(ctx, "$aws/things/pi-RPI-0042/shadow/get", 1, nil)
		},
	})
	if err != nil {
		log.Error("mqtt options", "err", err)
		return
	}
	_ = c.Subscribe("$aws/things/pi-RPI-0042/shadow/get/+", 1, func(topic string, payload []byte) {
		// hand over to the shadow service's buffered channel
	})
	_ = c.Run(ctx)
}
