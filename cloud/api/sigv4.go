package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/iotagent/iotagent/cloud/sigv4"
)

// Credentials are the access key pair that requests must be signed with.
type Credentials = sigv4.Credentials

// sign adds SigV4 headers to an outgoing request whose body is body.
func sign(req *http.Request, body []byte, creds Credentials, region, service string, t time.Time) {
	sigv4.Sign(req, sigv4.PayloadHash(body), creds, region, service, t)
}

// authenticate parses the request's SigV4 signature and, unless the server
// is unauthenticated (Options.NoAuth), verifies it. It returns nil for an
// unsigned request only when unauthenticated.
func (s *Server) authenticate(r *http.Request, body []byte) (*sigv4.Auth, error) {
	a, err := sigv4.Parse(r)
	if err != nil {
		return nil, authError(err)
	}
	if s.o.NoAuth {
		return a, nil
	}
	if s.o.Credentials == nil {
		return nil, errorf(http.StatusForbidden, "UnrecognizedClientException",
			"This iotsim has no credentials configured; no request can be authenticated.")
	}
	if a == nil {
		return nil, errorf(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	if err := sigv4.Verify(r, a, sigv4.Check{
		Credentials: *s.o.Credentials,
		Region:      s.region(),
		Now:         s.now(),
		PayloadHash: sigv4.PayloadHash(body),
	}); err != nil {
		return nil, authError(err)
	}
	if family(a.Service) == "" {
		return nil, errorf(http.StatusForbidden, "InvalidSignatureException", "Credential should be scoped to correct service: '%s'.", a.Service)
	}
	return a, nil
}

// authError maps a sigv4 failure to the REST API's 403 error types.
func authError(err error) *apiError {
	code := "InvalidSignatureException"
	switch {
	case errors.Is(err, sigv4.ErrMalformed):
		code = "IncompleteSignatureException"
	case errors.Is(err, sigv4.ErrUnknownKey):
		return errorf(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	return errorf(http.StatusForbidden, code, "%s", err.Error())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
