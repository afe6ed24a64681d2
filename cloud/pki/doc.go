// Package pki is iotsim's certificate authority. It stands in for the three
// sources of certificates that AWS IoT Core uses:
//
//   - the root CA that signs device certificates (LoadOrCreateCA), which
//     the simulator persists in its data dir and reuses on the next start;
//   - the server certificates the broker presents (ServerCertificates): one
//     RSA 2048 and one ECDSA P-256 chain, as AWS serves both (Amazon Root CA 1
//     and Root CA 3), with SANs for the host names and IPs devices dial;
//   - device certificates (IssueDevice for a public key from a CSR or a TPM,
//     NewKeysAndCertificate for AWS's CreateKeysAndCertificate).
//
// CertificateID computes AWS's certificate id: the lowercase hex SHA-256 of
// the certificate's DER encoding.
//
// Private keys are written as PKCS#8 PEM with mode 0600, atomically (temp
// file, fsync, rename), so a crash never leaves a truncated key behind.
package pki
