package provisioning

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Payload formats: the last segment of a request topic.
const (
	FormatJSON = "json"
	FormatCBOR = "cbor"
)

// Wire messages (spec/provisioning.md §2). CBOR uses the same keys as JSON.
type (
	createCSRRequest struct {
		CSR string `json:"certificateSigningRequest" cbor:"certificateSigningRequest"`
	}
	createResponse struct {
		CertificateID  string `json:"certificateId" cbor:"certificateId"`
		CertificatePEM string `json:"certificatePem" cbor:"certificatePem"`
		PrivateKey     string `json:"privateKey,omitempty" cbor:"privateKey,omitempty"`
		Token          string `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
	}
	registerRequest struct {
		Token      string            `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
		Parameters map[string]string `json:"parameters,omitempty" cbor:"parameters,omitempty"`
	}
	registerResponse struct {
		DeviceConfiguration map[string]string `json:"deviceConfiguration" cbor:"deviceConfiguration"`
		ThingName           string            `json:"thingName" cbor:"thingName"`
	}
	// errorResponse is the body of every …/rejected message.
	errorResponse struct {
		StatusCode   int    `json:"statusCode" cbor:"statusCode"`
		ErrorCode    string `json:"errorCode" cbor:"errorCode"`
		ErrorMessage string `json:"errorMessage" cbor:"errorMessage"`
	}
)

var cborDec = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 1024,
		MaxMapPairs:      1024,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// decode reads a request in format f. An empty payload is an empty request
// (the docs say CreateKeysAndCertificate's payload is empty). Unknown fields
// are ignored.
func decode(f string, payload []byte, v any) error {
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil
	}
	var err error
	switch f {
	case FormatJSON:
		err = json.Unmarshal(payload, v)
	case FormatCBOR:
		err = cborDec.Unmarshal(payload, v)
	default:
		return fmt.Errorf("unknown format %q", f)
	}
	if err != nil {
		return fmt.Errorf("decode %s payload: %w", f, err)
	}
	return nil
}

// encode writes a response in format f.
func encode(f string, v any) ([]byte, error) {
	if f == FormatCBOR {
		return cbor.Marshal(v)
	}
	return json.Marshal(v)
}
