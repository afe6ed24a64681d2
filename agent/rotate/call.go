package rotate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/iotagent/iotagent/agent/internal/fleetapi"
)

// call sends one fleet provisioning request (JSON) and waits for its answer.
func (r *rotation) call(ctx context.Context, apiName, base string, req, resp any) error {
	o := fleetapi.Options{Format: "json", ResponseTimeout: r.o.ResponseTimeout, Attempts: r.o.Attempts}
	if err := fleetapi.Call(ctx, r.t, o, apiName, base, req, resp); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// certificateID is AWS's certificate id: hex SHA-256 of the DER.
func certificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
