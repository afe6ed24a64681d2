package provisioning

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"
)

// TokenLifetime is how long a certificate ownership token is valid.
const TokenLifetime = time.Hour

// replayWindow is how long after issue the accepted answer of a consumed
// token is kept, to answer an identical retry (see Service).
const replayWindow = 24 * time.Hour

// token is an issued certificate ownership token.
type token struct {
	certID      string
	claimCertID string // the certificate of the connection that asked for it
	issued      time.Time
	busy        bool // a RegisterThing with it is in progress

	// Set once it has been used successfully.
	used     bool
	params   map[string]string
	response registerResponse
}

// tokens is the in-memory token table. Tokens do not survive an iotsim
// restart: a device then gets InvalidCertificateOwnershipToken and starts
// over, as it does after an expiry.
type tokens struct {
	mu    sync.Mutex
	m     map[string]*token
	swept time.Time // the last scan by expired
}

// sweepEvery spaces expired's scans of the whole table: every request
// calls it, and a scan per request would cost each request the size of
// the table (a day of provisioned devices). Expiries are an hour apart
// from issue, so a minute's delay in deleting them does not matter.
const sweepEvery = time.Minute

// newToken returns an opaque, unguessable token: base64 of a small JSON
// object with 256 random bits, shaped like AWS's (which start "eyJ").
func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	j, _ := json.Marshal(struct {
		Version string `json:"version"`
		Nonce   string `json:"nonce"`
	}{"2019-09-10", base64.RawURLEncoding.EncodeToString(b[:])})
	return base64.StdEncoding.EncodeToString(j)
}

func (ts *tokens) add(tok string, t *token) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[string]*token{}
	}
	ts.m[tok] = t
}

// expired removes and returns the certificate ids of tokens that expired
// unused, and forgets consumed tokens past the replay window. It scans at
// most once per sweepEvery, and returns nil in between.
func (ts *tokens) expired(now time.Time) []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if d := now.Sub(ts.swept); d >= 0 && d < sweepEvery {
		return nil
	}
	ts.swept = now
	var ids []string
	for k, t := range ts.m {
		switch {
		case t.busy:
		case !t.used && now.Sub(t.issued) >= TokenLifetime:
			ids = append(ids, t.certID)
			delete(ts.m, k)
		case t.used && now.Sub(t.issued) >= replayWindow:
			delete(ts.m, k)
		}
	}
	return ids
}
