package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/model"
)

// clientOptions are the flags of every verb that talks to a running
// tollgate's admin API (apply, get, delete, status, explain, diff).
type clientOptions struct {
	Server    string
	Token     string
	TokenFile string
	CACert    string
	Cert      string
	Key       string
	Output    string
	Timeout   time.Duration
}

// addClientFlags binds the client flags to cmd; TOLLGATE_SERVER and
// TOLLGATE_TOKEN are their defaults.
func addClientFlags(cmd *cobra.Command, o *clientOptions) {
	f := cmd.Flags()
	server := os.Getenv("TOLLGATE_SERVER")
	if server == "" {
		server = "http://127.0.0.1:19000"
	}
	f.StringVar(&o.Server, "server", server, "URL of tollgate's admin API (or TOLLGATE_SERVER)")
	f.StringVar(&o.Token, "token", "", "bearer token for writes (or TOLLGATE_TOKEN; prefer --token-file: a flag shows in ps)")
	f.StringVar(&o.TokenFile, "token-file", "", "file holding the bearer token for writes")
	f.StringVar(&o.CACert, "cacert", "", "CA bundle (PEM) that verifies the admin server's certificate (https)")
	f.StringVar(&o.Cert, "cert", "", "client certificate (PEM) for mutual TLS, e.g. an X.509 SVID")
	f.StringVar(&o.Key, "key", "", "private key (PEM) of --cert")
	f.StringVarP(&o.Output, "output", "o", "text", "text, json or yaml")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Second, "how long to wait for the server")
}

// apiClient talks to the admin API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// client builds an apiClient from the flags.
func (o *clientOptions) client() (*apiClient, error) {
	switch o.Output {
	case "text", "json", "yaml":
	default:
		return nil, fmt.Errorf("-o %q: use text, json or yaml", o.Output)
	}
	token := o.Token
	if token == "" {
		token = os.Getenv("TOLLGATE_TOKEN")
	}
	if o.TokenFile != "" {
		data, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CACert != "" || o.Cert != "" || o.Key != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CACert != "" {
			pem, err := os.ReadFile(o.CACert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--cacert %s holds no PEM certificate", o.CACert)
			}
			tc.RootCAs = pool
		}
		if (o.Cert == "") != (o.Key == "") {
			return nil, errors.New("--cert and --key go together")
		}
		if o.Cert != "" {
			pair, err := tls.LoadX509KeyPair(o.Cert, o.Key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		tr.TLSClientConfig = tc
	}
	return &apiClient{base: strings.TrimRight(o.Server, "/"), token: token, http: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// apiError is a refusal from the server, as the API's Status body says.
type apiError struct {
	Code       int               `json:"code"`
	Reason     string            `json:"reason"`
	Message    string            `json:"message"`
	Violations []model.Violation `json:"violations,omitempty"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d): %s", e.Reason, e.Code, e.Message)
	for _, v := range e.Violations {
		b.WriteString("\n  " + v.Error())
	}
	return b.String()
}

// do sends one request; body, if not nil, is sent as JSON (or as is when
// it is a []byte, with contentType). out, if not nil, receives the JSON
// answer. A status of 400 or more is returned as an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd, contentType = bytes.NewReader(b.data), b.contentType
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w (is tollgate serving its admin API there? set --server or TOLLGATE_SERVER)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		ae := &apiError{Code: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Reason, ae.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return nil
}

// rawBody is a request body sent as is.
type rawBody struct {
	data        []byte
	contentType string
}
