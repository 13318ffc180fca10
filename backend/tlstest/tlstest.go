// Package tlstest mints a throw-away certificate authority and server
// certificates for the fake Snyk and SCM servers. The engine is then configured
// with the CA's PEM as its `ca_cert`, exactly as an operator with a private CA
// would, instead of turning TLS verification off in tests.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"time"
)

// CA is a self-signed certificate authority held in memory.
type CA struct {
	// CertPEM is the CA certificate, PEM encoded: what the engine's ca_cert gets.
	CertPEM []byte

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a CA valid for a day.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "vault-plugin-secrets-snyk test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		cert:    cert,
		key:     key,
	}, nil
}

// MustNewCA is NewCA for tests and tools where a failure is fatal anyway.
func MustNewCA() *CA {
	ca, err := NewCA()
	if err != nil {
		panic(fmt.Sprintf("tlstest: %v", err))
	}
	return ca
}

// ServerCertificate issues a leaf certificate for loopback (127.0.0.1, ::1,
// localhost) plus any extra host names or IPs.
func (ca *CA) ServerCertificate(hosts ...string) (tls.Certificate, error) {
	return ca.Certificate(CertificateOptions{Hosts: append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)})
}

// CertificateOptions describes a leaf certificate, including the broken
// ones a client must refuse.
type CertificateOptions struct {
	// Hosts are the DNS names and IPs the certificate is valid for.
	Hosts []string
	// Expired issues a certificate whose validity ended an hour ago.
	Expired bool
}

// Certificate issues a leaf certificate signed by the CA.
func (ca *CA) Certificate(opts CertificateOptions) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	notBefore, notAfter := time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if opts.Expired {
		notBefore, notAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	}
	cn := "localhost"
	if len(opts.Hosts) > 0 {
		cn = opts.Hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range opts.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ServerTLSConfig is a server-side TLS configuration presenting a certificate
// issued by the CA.
func (ca *CA) ServerTLSConfig(hosts ...string) (*tls.Config, error) {
	cert, err := ca.ServerCertificate(hosts...)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// StartServer serves h over TLS on a free loopback port with a certificate
// from the CA. Close the returned server when done.
func (ca *CA) StartServer(h http.Handler) (*httptest.Server, error) {
	cfg, err := ca.ServerTLSConfig()
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	return srv, nil
}

// WriteCertFile writes the CA certificate to path (for tools such as Node's
// NODE_EXTRA_CA_CERTS or `vault write snyk/config ca_cert=@file`).
func (ca *CA) WriteCertFile(path string) error {
	return os.WriteFile(path, ca.CertPEM, 0o644) //nolint:gosec // a CA certificate is public; other processes (Vault, the Broker) read it
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

// RSAPrivateKeyPEM is a fresh 2048-bit RSA key in PKCS#1 PEM, the form in
// which GitHub issues an App's private key.
func RSAPrivateKeyPEM() (string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})), nil
}
