package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/tollgate-dev/tollgate/store"
)

// etcdOpenTimeout bounds the first contact with etcd at start.
const etcdOpenTimeout = 10 * time.Second

// openEtcdStore opens the etcd API store of --store, with the TLS files of
// --store-cacert, --store-cert and --store-key for etcds://.
func (cfg serveConfig) openEtcdStore() (store.Backend, string, error) {
	opts, err := store.ParseEtcdURL(cfg.Store)
	if err != nil {
		return nil, "", fmt.Errorf("--store: %w", err)
	}
	if cfg.StoreCACert != "" || cfg.StoreCert != "" || cfg.StoreKey != "" {
		if !opts.UseTLS {
			return nil, "", fmt.Errorf("--store-cacert, --store-cert and --store-key are for TLS: write --store etcds://... instead of etcd://")
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.StoreCACert != "" {
			pem, err := os.ReadFile(cfg.StoreCACert)
			if err != nil {
				return nil, "", fmt.Errorf("--store-cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, "", fmt.Errorf("--store-cacert %s holds no PEM certificate", cfg.StoreCACert)
			}
			tc.RootCAs = pool
		}
		if (cfg.StoreCert == "") != (cfg.StoreKey == "") {
			return nil, "", fmt.Errorf("--store-cert and --store-key go together")
		}
		if cfg.StoreCert != "" {
			pair, err := tls.LoadX509KeyPair(cfg.StoreCert, cfg.StoreKey)
			if err != nil {
				return nil, "", fmt.Errorf("--store-cert/--store-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts.TLS = tc
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdOpenTimeout)
	defer cancel()
	b, err := store.OpenEtcd(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	return b, "etcd:" + cfg.Store, nil
}
