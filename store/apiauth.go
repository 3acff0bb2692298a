package store

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	yaml "go.yaml.in/yaml/v3"
)

// TokenFile is the file of API bearer tokens (--api-tokens). Only the
// SHA-256 of each token is kept, so the file grants nothing to whoever
// reads it:
//
//	tokens:
//	- name: ci-deployer
//	  sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	  namespaces: [team-a, team-b]   # "*" is every namespace
type TokenFile struct {
	Tokens []TokenEntry `yaml:"tokens"`
}

// TokenEntry is one token.
type TokenEntry struct {
	Name       string   `yaml:"name"`
	SHA256     string   `yaml:"sha256"`
	Namespaces []string `yaml:"namespaces"`
}

// IdentityGrant lets a client certificate identity write namespaces. The
// identity is a SPIFFE ID (the certificate's URI SAN) or, for a certificate
// without one, its subject common name; a trailing "/*" matches every ID
// below the path.
type IdentityGrant struct {
	Identity   string   `json:"identity" mapstructure:"identity"`
	Namespaces []string `json:"namespaces" mapstructure:"namespaces"`
}

// Principal is an authenticated writer.
type Principal struct {
	// Name is "token:<name>" or the certificate identity.
	Name       string
	namespaces []string
}

// CanWrite reports whether p may write objects of namespace ns.
func (p Principal) CanWrite(ns string) bool {
	return slices.Contains(p.namespaces, "*") || slices.Contains(p.namespaces, ns)
}

// Authenticator checks the credentials of API writes.
type Authenticator struct {
	mu         sync.Mutex
	tokens     map[[sha256.Size]byte]TokenEntry
	identities []IdentityGrant

	// file, if set, is re-read when it changes (FollowTokenFile).
	file    string
	stamp   tokenFileStamp
	checked time.Time
	log     *slog.Logger
}

// tokenFileStamp tells a changed token file.
type tokenFileStamp struct {
	mod  time.Time
	size int64
}

// tokenRecheck bounds how often the token file's stamp is looked at.
const tokenRecheck = time.Second

// FollowTokenFile makes a re-read the token file at path (whose tokens a
// was built with) when it changes, so that a token is granted or revoked
// without a restart. A file that no longer parses keeps the tokens it last
// held, and says so in the log.
func (a *Authenticator) FollowTokenFile(path string, log *slog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a.file, a.log, a.checked = path, log, time.Now()
	if fi, err := os.Stat(path); err == nil {
		a.stamp = tokenFileStamp{fi.ModTime(), fi.Size()}
	}
}

// refresh re-reads the token file if it changed. The caller holds a.mu.
func (a *Authenticator) refresh() {
	if a.file == "" || time.Since(a.checked) < tokenRecheck {
		return
	}
	a.checked = time.Now()
	fi, err := os.Stat(a.file)
	if err != nil {
		a.log.Error("API token file unreadable; keeping the tokens it held", "file", a.file, "error", err)
		return
	}
	stamp := tokenFileStamp{fi.ModTime(), fi.Size()}
	if stamp == a.stamp {
		return
	}
	a.stamp = stamp
	entries, err := ReadTokenFile(a.file)
	if err == nil {
		var tokens map[[sha256.Size]byte]TokenEntry
		if tokens, err = tokenMap(entries); err == nil {
			a.tokens = tokens
			a.log.Info("API token file re-read", "file", a.file, "tokens", len(tokens))
			return
		}
	}
	a.log.Error("API token file changed but is not valid; keeping the tokens it held: fix it", "file", a.file, "error", err)
}

// ParseTokenFile reads a token file's content; path only names it in
// errors.
func ParseTokenFile(path string, data []byte) ([]TokenEntry, error) {
	var tf TokenFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: want `tokens: [{name: ..., sha256: <hex>, namespaces: [...]}]`: %w", path, err)
	}
	for i, t := range tf.Tokens {
		where := fmt.Sprintf("%s: tokens[%d]", path, i)
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("%s: name is required: it is how the audit log names the writer", where)
		case len(t.Namespaces) == 0:
			return nil, fmt.Errorf("%s (%s): namespaces is empty, so the token could write nothing: list namespaces, or \"*\" for all", where, t.Name)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s (%s): sha256 must be the 64 hex digits of the token's SHA-256 (tollgate token new prints it), never the token itself", where, t.Name)
		}
	}
	return tf.Tokens, nil
}

// NewAuthenticator returns an authenticator for the tokens and the
// certificate identities.
func NewAuthenticator(tokens []TokenEntry, identities []IdentityGrant) (*Authenticator, error) {
	m, err := tokenMap(tokens)
	if err != nil {
		return nil, err
	}
	for i, g := range identities {
		if g.Identity == "" || len(g.Namespaces) == 0 {
			return nil, fmt.Errorf("api-identities[%d]: identity and namespaces are required, e.g. {identity: spiffe://corp.example/ci/*, namespaces: [team-a]}", i)
		}
	}
	return &Authenticator{tokens: m, identities: identities, log: slog.New(slog.DiscardHandler)}, nil
}

// tokenMap indexes tokens by their hash.
func tokenMap(tokens []TokenEntry) (map[[sha256.Size]byte]TokenEntry, error) {
	out := make(map[[sha256.Size]byte]TokenEntry, len(tokens))
	for _, t := range tokens {
		b, err := hex.DecodeString(strings.ToLower(t.SHA256))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("token %s: sha256 must be 64 hex digits", t.Name)
		}
		var k [sha256.Size]byte
		copy(k[:], b)
		if other, dup := out[k]; dup {
			return nil, fmt.Errorf("tokens %s and %s have the same hash: give each writer its own token", other.Name, t.Name)
		}
		out[k] = t
	}
	return out, nil
}

// Enabled reports whether any writer is configured.
func (a *Authenticator) Enabled() bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refresh()
	return len(a.tokens) > 0 || len(a.identities) > 0 || a.file != ""
}

// errNoCredentials is returned for a request without any credential.
var errNoCredentials = errors.New("no credentials: send a bearer token (Authorization: Bearer ..., tollgate --token-file) or a client certificate tollgate trusts")

// Authenticate identifies the writer of r: a bearer token, else a
// verified client certificate.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return Principal{}, errors.New("the Authorization header must be `Bearer <token>`")
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		a.mu.Lock()
		a.refresh()
		t, ok := a.tokens[sum]
		a.mu.Unlock()
		// The map lookup compares digests, which a caller cannot steer;
		// the constant-time compare is belt and braces.
		if ok {
			want, _ := hex.DecodeString(strings.ToLower(t.SHA256))
			if subtle.ConstantTimeCompare(want, sum[:]) == 1 {
				return Principal{Name: "token:" + t.Name, namespaces: t.Namespaces}, nil
			}
		}
		return Principal{}, errors.New("the bearer token is not one of --api-tokens")
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		id := cert.Subject.CommonName
		if sid, err := x509svid.IDFromCert(cert); err == nil {
			id = sid.String()
		}
		for _, g := range a.identities {
			if identityMatches(g.Identity, id) {
				return Principal{Name: id, namespaces: g.Namespaces}, nil
			}
		}
		return Principal{}, fmt.Errorf("the client certificate's identity %q is not in api-identities", id)
	}
	return Principal{}, errNoCredentials
}

// identityMatches matches an identity against a grant: exact, or a prefix
// ending in "/*".
func identityMatches(pattern, id string) bool {
	if p, ok := strings.CutSuffix(pattern, "/*"); ok {
		return strings.HasPrefix(id, p+"/")
	}
	return pattern == id
}
