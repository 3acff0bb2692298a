package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// openBackend opens the API store the configuration names: bbolt in
// --state-dir, or etcd with --store; nil when neither is set.
func (cfg serveConfig) openBackend() (store.Backend, string, error) {
	switch {
	case cfg.Store != "" && cfg.StateDir != "":
		return nil, "", errors.New("--state-dir and --store are mutually exclusive: --state-dir keeps the API store in a bbolt file on this machine, --store etcd://... shares it between replicas")
	case cfg.Store != "":
		return cfg.openEtcdStore()
	case cfg.StateDir != "":
		path := filepath.Join(cfg.StateDir, "tollgate.db")
		b, err := store.OpenBolt(path)
		return b, "bolt:" + path, err
	}
	return nil, "", nil
}

// authenticator builds the API's writers from --api-tokens and
// api-identities.
func (cfg serveConfig) authenticator() (*store.Authenticator, error) {
	var tokens []store.TokenEntry
	if cfg.APITokens != "" {
		var err error
		if tokens, err = store.ReadTokenFile(cfg.APITokens); err != nil {
			return nil, err
		}
	}
	if len(cfg.APIIdentities) > 0 && cfg.AdminClientCA == "" && !cfg.AdminSPIFFE {
		return nil, errors.New("api-identities grants client certificates, but the admin server verifies none: set --admin-tls-cert, --admin-tls-key and --admin-client-ca, or --admin-spiffe with --spiffe-socket")
	}
	if len(tokens) > 0 && cfg.AdminTLSCert == "" && !cfg.AdminSPIFFE {
		if err := loopback(cfg.AdminAddr); err != nil {
			return nil, fmt.Errorf("--api-tokens with a plaintext admin server on %s would send bearer tokens in clear over the network: serve the admin API over HTTPS (--admin-tls-cert, --admin-tls-key) or bind --admin-addr to 127.0.0.1", cfg.AdminAddr)
		}
	}
	return store.NewAuthenticator(tokens, cfg.APIIdentities)
}

// loopback checks that addr is a loopback address.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address", addr)
}

// adminTLS is the admin server's TLS configuration, or nil for plaintext:
// from files, or tollgate's SVID (svid, from --spiffe-socket) with
// --admin-spiffe. Client certificates are verified when sent, not
// required: bearer tokens and reads need none.
func (cfg serveConfig) adminTLS(svid *xds.SPIFFETLS) (*tls.Config, error) {
	if cfg.AdminSPIFFE {
		switch {
		case svid == nil:
			return nil, errors.New("--admin-spiffe needs --spiffe-socket: the admin server's certificate is tollgate's SVID")
		case cfg.AdminTLSCert != "" || cfg.AdminTLSKey != "" || cfg.AdminClientCA != "":
			return nil, errors.New("--admin-spiffe and --admin-tls-cert/--admin-tls-key/--admin-client-ca are mutually exclusive: with --admin-spiffe the certificate and the client trust bundles come from the Workload API")
		}
		return svid.AdminConfig(), nil
	}
	if cfg.AdminTLSCert == "" && cfg.AdminTLSKey == "" {
		if cfg.AdminClientCA != "" {
			return nil, errors.New("--admin-client-ca needs --admin-tls-cert and --admin-tls-key: client certificates come with HTTPS")
		}
		return nil, nil
	}
	if cfg.AdminTLSCert == "" || cfg.AdminTLSKey == "" {
		return nil, errors.New("--admin-tls-cert and --admin-tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(cfg.AdminTLSCert, cfg.AdminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("--admin-tls-cert/--admin-tls-key: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if cfg.AdminClientCA != "" {
		pem, err := os.ReadFile(cfg.AdminClientCA)
		if err != nil {
			return nil, fmt.Errorf("--admin-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--admin-client-ca %s holds no PEM certificate", cfg.AdminClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
