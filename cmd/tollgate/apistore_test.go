package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// operatorToken writes a token file granting every namespace and returns a
// serve change that uses it (with an API store in a temporary directory),
// and the token.
func operatorToken(t *testing.T) (func(*serveConfig), string) {
	t.Helper()
	const token = "tg_test_operator_token"
	sum := sha256.Sum256([]byte(token))
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte("tokens:\n- name: operator\n  sha256: "+hex.EncodeToString(sum[:])+"\n  namespaces: [\"*\"]\n"), 0o600))
	state := t.TempDir()
	return func(c *serveConfig) { c.APITokens, c.StateDir = path, state }, token
}

// both applies two serve changes.
func both(a, b func(*serveConfig)) func(*serveConfig) {
	return func(c *serveConfig) {
		if a != nil {
			a(c)
		}
		if b != nil {
			b(c)
		}
	}
}

// TestAPIStoreExample runs examples/api-store as its README says: the
// platform's files served, team A's objects applied through the API with
// team A's token, an Envoy of the gateway connected, and every object
// Accepted and Programmed; the token writes only its namespace.
func TestAPIStoreExample(t *testing.T) {
	const example = "../../examples/api-store"
	token, err := os.ReadFile(filepath.Join(example, "team-a.token"))
	require.NoError(t, err)
	inst, _ := startTollgateWith(t, filepath.Join(example, "policies"), func(c *serveConfig) {
		c.StateDir, c.APITokens = t.TempDir(), filepath.Join(example, "tokens.yaml")
	})
	base := "http://" + inst.AdminAddr.String()
	data, err := os.ReadFile(filepath.Join(example, "api", "team-a.yaml"))
	require.NoError(t, err)
	docs := strings.Split(string(data), "\n---\n")
	require.Len(t, docs, 2)
	put := func(path, body, tok string) (int, string) {
		req, err := http.NewRequest("PUT", base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	const p = "/apis/tollgate.dev/v1alpha1/namespaces/team-a/"
	code, out := put(p+"httproutes/chat", docs[0], string(token))
	require.Equal(t, http.StatusCreated, code, out)
	code, out = put(p+"guardrailspolicies/chat-models", docs[1], string(token))
	require.Equal(t, http.StatusCreated, code, out)
	code, out = put("/apis/tollgate.dev/v1alpha1/namespaces/default/httproutes/chat", strings.Replace(docs[0], "namespace: team-a", "namespace: default", 1), string(token))
	require.Equal(t, http.StatusForbidden, code, out)
	code, out = put("/apis/tollgate.dev/v1alpha1/namespaces/default/backends/openai", "kind: Backend\n", string(token))
	require.Equal(t, http.StatusForbidden, code, out)

	env := connect(t, inst, "envoy-1", "egress", false, nil)
	_, err = env.WaitFor(waitCtx(t), complete("backend/default/openai"))
	require.NoError(t, err)
	var st struct {
		Objects []struct {
			Object     string `json:"object"`
			Source     string `json:"source"`
			Conditions []struct {
				Type, Status, Reason, Message string
			} `json:"conditions"`
		} `json:"objects"`
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/status/objects")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&st) != nil || len(st.Objects) != 4 {
			return false
		}
		for _, o := range st.Objects {
			for _, c := range o.Conditions {
				if c.Status != "True" {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "%+v", &st)
	sources := map[string]string{}
	for _, o := range st.Objects {
		sources[o.Object] = o.Source
	}
	require.Equal(t, "api", sources["HTTPRoute/team-a/chat"])
	require.Equal(t, "api", sources["GuardRailsPolicy/team-a/chat-models"])
	require.Contains(t, sources["Gateway/egress"], "platform.yaml:")
}
