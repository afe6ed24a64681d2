package rotate_test

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/iotagent/iotagent/agent/rotate"
)

// Due decides automatic rotation: here the certificate expires in 20 days
// and the agent rotates 30 days ahead.
func ExampleDue() {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotAfter: now.AddDate(0, 0, 20)}
	fmt.Println(rotate.Due(cert, now, 30), rotate.Due(cert, now, 10))
	// Output: true false
}
