package provisioning

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// HookTimeout is how long a pre-provisioning hook may take (AWS: 5 s).
const HookTimeout = 5 * time.Second

// HookPayloadVersion is the pre-provisioning hook payload version.
const HookPayloadVersion = "2020-04-01"

// HookInput is what a pre-provisioning hook receives (AWS's Lambda event).
type HookInput struct {
	ClaimCertificateID string            `json:"claimCertificateId"`
	CertificateID      string            `json:"certificateId"`
	CertificatePEM     string            `json:"certificatePem"`
	TemplateARN        string            `json:"templateArn"`
	ClientID           string            `json:"clientId"`
	Parameters         map[string]string `json:"parameters"`
}

// HookOutput is a pre-provisioning hook's answer. ParameterOverrides are
// merged into the request's parameters (the override wins).
type HookOutput struct {
	AllowProvisioning  bool              `json:"allowProvisioning"`
	ParameterOverrides map[string]string `json:"parameterOverrides,omitempty"`
}

// Hook is a pre-provisioning hook. An error, a timeout (ctx ends after
// HookTimeout) or AllowProvisioning false refuses the device. A Hook must
// return when ctx ends.
type Hook func(ctx context.Context, in HookInput) (HookOutput, error)

// ErrHookRefused is returned by AllowList for a serial number not on it.
var ErrHookRefused = errors.New("provisioning: refused by the pre-provisioning hook")

// AllowList is a hook that allows only the given serial numbers (the
// SerialNumber parameter).
func AllowList(serials ...string) Hook {
	allowed := slices.Clone(serials)
	return func(_ context.Context, in HookInput) (HookOutput, error) {
		return HookOutput{AllowProvisioning: slices.Contains(allowed, in.Parameters["SerialNumber"])}, nil
	}
}

// maxHookResponse bounds a webhook's answer.
const maxHookResponse = 64 << 10

// Webhook is a hook that POSTs the HookInput as JSON to url and expects a
// 2xx answer with a HookOutput JSON body. client nil means
// http.DefaultClient; the request is bounded by ctx.
func Webhook(url string, client *http.Client) Hook {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context, in HookInput) (HookOutput, error) {
		body, err := json.Marshal(in)
		if err != nil {
			return HookOutput{}, fmt.Errorf("webhook: encode: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return HookOutput{}, fmt.Errorf("webhook: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return HookOutput{}, fmt.Errorf("webhook: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxHookResponse))
		if err != nil {
			return HookOutput{}, fmt.Errorf("webhook: read answer: %w", err)
		}
		if resp.StatusCode/100 != 2 {
			return HookOutput{}, fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
		}
		var out HookOutput
		if err := json.Unmarshal(b, &out); err != nil {
			return HookOutput{}, fmt.Errorf("webhook: decode answer: %w", err)
		}
		return out, nil
	}
}
