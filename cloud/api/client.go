package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIError is an error answer of the REST API, in AWS's words.
type APIError struct {
	Status  int    // HTTP status
	Code    string // e.g. "ResourceNotFoundException"
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// Client calls iotsim's REST API (or AWS's, given signing credentials).
type Client struct {
	// BaseURL is the server's root, e.g. "http://127.0.0.1:8443".
	BaseURL string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
	// Credentials, if set, sign requests with SigV4 (needed against a strict
	// server); Region is the scope's region (default us-east-1). Nil sends
	// unsigned requests.
	Credentials *Credentials
	Region      string
}

// maxResponseBytes bounds a response body the client reads.
const maxResponseBytes = 4 << 20

// do sends one request and returns the 200 body, or an *APIError.
func (c *Client) do(ctx context.Context, service, method, path string, query url.Values, header http.Header, body []byte) ([]byte, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.Credentials != nil {
		region := c.Region
		if region == "" {
			region = "us-east-1"
		}
		sign(req, body, *c.Credentials, region, service, time.Now())
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	return nil, responseError(resp.StatusCode, resp.Header, b)
}

// responseError decodes an error response the way AWS's clients do: the
// code from x-amzn-ErrorType, else the body's code/__type; the message from
// the body's message/Message.
func responseError(status int, h http.Header, body []byte) *APIError {
	var eb struct {
		Message  string `json:"message"`
		MessageU string `json:"Message"`
		Code     any    `json:"code"`
		Type     string `json:"__type"`
	}
	_ = json.Unmarshal(body, &eb)
	e := &APIError{Status: status, Code: h.Get("x-amzn-ErrorType"), Message: eb.Message}
	if e.Message == "" {
		e.Message = eb.MessageU
	}
	if e.Code == "" {
		if s, ok := eb.Code.(string); ok {
			e.Code = s
		} else {
			e.Code = eb.Type
		}
	}
	e.Code, _, _ = strings.Cut(e.Code, ":")
	if _, after, ok := strings.Cut(e.Code, "#"); ok {
		e.Code = after
	}
	if e.Code == "" {
		e.Code = http.StatusText(status)
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
	}
	return e
}

// ProvisioningTemplateExists reports whether the fleet provisioning
// template name exists (DescribeProvisioningTemplate).
func (c *Client) ProvisioningTemplateExists(ctx context.Context, name string) (bool, error) {
	_, err := c.do(ctx, "iot", http.MethodGet, "/provisioning-templates/"+url.PathEscape(name), nil, nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe provisioning template %s: %w", name, err)
	}
	return true, nil
}

// CreateThing creates the thing name (idempotent for the same attributes).
func (c *Client) CreateThing(ctx context.Context, name string) error {
	_, err := c.do(ctx, "iot", http.MethodPost, "/things/"+url.PathEscape(name), nil,
		http.Header{"Content-Type": {"application/json"}}, []byte("{}"))
	if err != nil {
		return fmt.Errorf("create thing %s: %w", name, err)
	}
	return nil
}

// CreateKeysAndCertificate has a key pair and a certificate made, registered
// ACTIVE when setActive is set and INACTIVE otherwise.
func (c *Client) CreateKeysAndCertificate(ctx context.Context, setActive bool) (certID, certARN, certPEM, keyPEM string, err error) {
	b, err := c.do(ctx, "iot", http.MethodPost, "/keys-and-certificate",
		url.Values{"setAsActive": {fmt.Sprint(setActive)}}, nil, nil)
	if err != nil {
		return "", "", "", "", fmt.Errorf("create keys and certificate: %w", err)
	}
	var out struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
		CertificatePEM string `json:"certificatePem"`
		KeyPair        struct {
			PrivateKey string `json:"PrivateKey"`
		} `json:"keyPair"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", "", "", "", fmt.Errorf("create keys and certificate: decode response: %w", err)
	}
	if out.CertificateID == "" || out.KeyPair.PrivateKey == "" {
		return "", "", "", "", errors.New("create keys and certificate: response lacks certificateId or keyPair")
	}
	return out.CertificateID, out.CertificateARN, out.CertificatePEM, out.KeyPair.PrivateKey, nil
}

// AttachThingPrincipal attaches the principal (a certificate ARN) to thing.
func (c *Client) AttachThingPrincipal(ctx context.Context, thing, principalARN string) error {
	_, err := c.do(ctx, "iot", http.MethodPut, "/things/"+url.PathEscape(thing)+"/principals", nil,
		http.Header{"x-amzn-principal": {principalARN}}, nil)
	if err != nil {
		return fmt.Errorf("attach %s to thing %s: %w", principalARN, thing, err)
	}
	return nil
}

// AttachPolicy attaches the IoT policy called name to target (a
// certificate or thing-group ARN).
func (c *Client) AttachPolicy(ctx context.Context, name, target string) error {
	body, err := json.Marshal(map[string]string{"target": target})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "iot", http.MethodPut, "/target-policies/"+url.PathEscape(name), nil,
		http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return fmt.Errorf("attach policy %s to %s: %w", name, target, err)
	}
	return nil
}

func shadowQuery(name string) url.Values {
	if name == "" {
		return nil
	}
	return url.Values{"name": {name}}
}

// GetThingShadow returns the shadow document of thing ("" name = classic).
func (c *Client) GetThingShadow(ctx context.Context, thing, name string) ([]byte, error) {
	b, err := c.do(ctx, "iotdata", http.MethodGet, "/things/"+url.PathEscape(thing)+"/shadow", shadowQuery(name), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("get shadow of %s: %w", thing, err)
	}
	return b, nil
}

// UpdateThingShadow sends an update document and returns the accepted one.
func (c *Client) UpdateThingShadow(ctx context.Context, thing, name string, doc []byte) ([]byte, error) {
	if doc == nil {
		doc = []byte{}
	}
	b, err := c.do(ctx, "iotdata", http.MethodPost, "/things/"+url.PathEscape(thing)+"/shadow", shadowQuery(name), nil, doc)
	if err != nil {
		return nil, fmt.Errorf("update shadow of %s: %w", thing, err)
	}
	return b, nil
}

// CreatePolicy creates the IoT policy name with document doc.
func (c *Client) CreatePolicy(ctx context.Context, name, doc string) error {
	body, err := json.Marshal(map[string]string{"policyDocument": doc})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "iot", http.MethodPost, "/policies/"+url.PathEscape(name), nil,
		http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return fmt.Errorf("create policy %s: %w", name, err)
	}
	return nil
}

// Call sends one REST request signed for service (iot, iotdata,
// iot-jobs-data) with in, if not nil, as its JSON body, and decodes the
// answer into out, if not nil. Errors are *APIError.
func (c *Client) Call(ctx context.Context, service, method, path string, query url.Values, in, out any) error {
	var body []byte
	var hdr http.Header
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body, hdr = b, http.Header{"Content-Type": {"application/json"}}
	}
	b, err := c.do(ctx, service, method, path, query, hdr, body)
	if err != nil {
		return err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// IsCode reports whether err is an *APIError with this code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}
