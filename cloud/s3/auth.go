package s3

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/iotagent/iotagent/cloud/sigv4"
)

// errContentSHA256 is a body that does not hash to its X-Amz-Content-Sha256.
var errContentSHA256 = errors.New("s3: body does not match x-amz-content-sha256")

// authenticate checks r's SigV4 signature (header or presigned query) with
// the store's credentials and answers S3's errors. With Options.NoAuth only
// a presigned URL's expiry is checked. A body whose signed SHA-256 is given
// is checked as it is read.
func (s *Store) authenticate(r *http.Request) error {
	a, err := sigv4.Parse(r)
	if err != nil {
		return authError(err, r)
	}
	if s.o.NoAuth {
		if a != nil && a.Presigned {
			err := sigv4.Verify(r, a, sigv4.Check{Credentials: sigv4.Credentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: "-"}, Now: s.o.Now(), S3: true})
			if errors.Is(err, sigv4.ErrExpired) || errors.Is(err, sigv4.ErrSkew) {
				return authError(err, r)
			}
		}
		return nil
	}
	if s.o.Credentials == nil {
		return newErr(http.StatusForbidden, "AccessDenied", "Access Denied: this iotsim has no credentials configured.")
	}
	if a == nil {
		return newErr(http.StatusForbidden, "AccessDenied", "Access Denied")
	}
	hash := r.Header.Get("X-Amz-Content-Sha256")
	if !a.Presigned && hash == "" {
		return newErr(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	}
	if err := sigv4.Verify(r, a, sigv4.Check{
		Credentials: *s.o.Credentials,
		Region:      s.o.Region,
		Services:    []string{"s3"},
		Now:         s.o.Now(),
		S3:          true,
		PayloadHash: hash,
	}); err != nil {
		return authError(err, r)
	}
	if !a.Presigned && len(hash) == 64 && r.Body != nil {
		want, err := hex.DecodeString(hash)
		if err != nil {
			return newErr(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-... or a SHA-256 in hex")
		}
		r.Body = &hashCheck{rc: r.Body, h: sha256.New(), want: want}
	}
	return nil
}

// authError maps a sigv4 failure to S3's error codes.
func authError(err error, r *http.Request) *s3Error {
	msg := err.Error()
	switch {
	case errors.Is(err, sigv4.ErrUnknownKey):
		return newErr(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
	case errors.Is(err, sigv4.ErrMismatch):
		return newErr(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	case errors.Is(err, sigv4.ErrExpired):
		return newErr(http.StatusForbidden, "AccessDenied", "Request has expired")
	case errors.Is(err, sigv4.ErrSkew):
		if r.Header.Get("Authorization") == "" {
			return newErr(http.StatusForbidden, "AccessDenied", "Request is not valid yet")
		}
		return newErr(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	case r.Header.Get("Authorization") == "":
		return newErr(http.StatusBadRequest, "AuthorizationQueryParametersError", msg)
	}
	return newErr(http.StatusBadRequest, "AuthorizationHeaderMalformed", "The authorization header is malformed; "+strings.TrimPrefix(msg, "Authorization header: "))
}

// hashCheck fails the read that reaches EOF when the body's SHA-256 is not
// want, so that nothing is stored.
type hashCheck struct {
	rc   io.ReadCloser
	h    hash.Hash
	want []byte
}

func (c *hashCheck) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	if errors.Is(err, io.EOF) && string(c.h.Sum(nil)) != string(c.want) {
		return n, errContentSHA256
	}
	return n, err
}

func (c *hashCheck) Close() error { return c.rc.Close() }
