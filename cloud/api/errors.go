package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/shadow"
)

// shadowCodes maps a shadow service error code (its HTTP status) to the
// iot-data error code.
var shadowCodes = map[int]string{
	400: "InvalidRequestException",
	401: "UnauthorizedException",
	403: "UnauthorizedException",
	404: "ResourceNotFoundException",
	405: "MethodNotAllowedException",
	409: "ConflictException",
	413: "RequestEntityTooLargeException",
	415: "UnsupportedDocumentEncodingException",
	429: "ThrottlingException",
	500: "InternalFailureException",
	503: "ServiceUnavailableException",
}

// fromShadow turns a shadow service error into an API error. Errors that
// are not *shadow.Error pass through (and become 500s).
func fromShadow(err error) error {
	var se *shadow.Error
	if !errors.As(err, &se) {
		return err
	}
	code, ok := shadowCodes[se.Code]
	if !ok {
		return errorf(http.StatusInternalServerError, "InternalFailureException", "%s", se.Message)
	}
	status := se.Code
	if se.Code == 403 {
		status = 401
	}
	return &apiError{status: status, code: code, message: se.Message}
}

// fromRegistry turns a registry error into an API error. notFound is the
// message for registry.ErrNotFound; the other sentinels keep the registry's
// own words, less the sentinel's text.
func fromRegistry(err error, notFound string) error {
	msg := func(sentinel error) string {
		s := strings.TrimSuffix(err.Error(), ": "+sentinel.Error())
		if s == "" {
			s = sentinel.Error()
		}
		return strings.ToUpper(s[:1]) + s[1:] + "."
	}
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "%s", notFound)
	case errors.Is(err, registry.ErrExists):
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "%s", msg(registry.ErrExists))
	case errors.Is(err, registry.ErrInvalid):
		return invalid("%s", msg(registry.ErrInvalid))
	case errors.Is(err, registry.ErrCertificateState):
		return errorf(http.StatusNotAcceptable, "CertificateStateException", "%s", msg(registry.ErrCertificateState))
	case errors.Is(err, registry.ErrConflict):
		return errorf(http.StatusConflict, "DeleteConflictException", "%s", msg(registry.ErrConflict))
	}
	return err
}

func internal(what string) error {
	return errorf(http.StatusInternalServerError, "InternalFailureException", "%s is not available in this simulator", what)
}
