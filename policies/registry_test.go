package policies_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/policies/credentialinjector"
)

const base = modeltest.EgressToOpenAI

func lower(t *testing.T, src string, materials model.Materials) (*model.Config, model.Violations) {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("/policies/p.yaml", []byte(src))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	return cfg, policies.Lower(cfg, policies.Inputs{Materials: materials})
}

func TestConflictingPoliciesFirstByNameWins(t *testing.T) {
	src := base + `---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: b-second}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: b.key}}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: a-first}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: a.key}}
`
	cfg, errs := lower(t, src, model.Materials{
		"file:/policies/a.key": {Data: []byte("sk-FAKE-a\n")},
		"file:/policies/b.key": {Data: []byte("sk-FAKE-b\n")},
	})
	require.Empty(t, errs)
	require.Equal(t, "sk-FAKE-a", string(cfg.Backends[0].Credential.Secret))
	require.Equal(t, []model.Condition{{
		Object: "CredentialInjector/b-second", Type: "Accepted", Status: false, Reason: "Conflicted",
		Message: "CredentialInjector/a-first already applies CredentialInjector to Backend/openai; only one CredentialInjector may target an object",
	}}, cfg.Conditions)
}

func TestMaterialKeys(t *testing.T) {
	src := base + `---
apiVersion: tollgate.dev/v1alpha1
kind: BackendTLSPolicy
metadata: {name: tls}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  caCertificates: {file: /etc/pki/ca.pem}
  clientCertificate:
    certificate: {file: certs/c.pem}
    privateKey: {file: certs/c.key}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {env: OPENAI_API_KEY}}
`
	objs, errs := policies.NewScheme().Decode("/policies/p.yaml", []byte(src))
	require.Empty(t, errs)
	require.Equal(t, []string{"env:OPENAI_API_KEY", "file:/etc/pki/ca.pem", "file:/policies/certs/c.key", "file:/policies/certs/c.pem"}, policies.MaterialKeys(objs))
}

func TestSecretValuesNeverInMessages(t *testing.T) {
	src := base + `---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: k}}
`
	_, errs := lower(t, src, model.Materials{"file:/policies/k": {Data: []byte("sk-FAKE-line1\nsk-FAKE-line2\n")}})
	require.Len(t, errs, 1)
	require.Equal(t, "/policies/p.yaml:23: CredentialInjector/key: spec.apiKey.secret.file: k contains control characters (line breaks inside the value?); it must hold the secret alone", errs[0].Error())
}

// TestUnknownPresetListsEveryPreset: the refusal of an unknown API key
// preset names every preset there is, so that none is hidden from users.
func TestUnknownPresetListsEveryPreset(t *testing.T) {
	src := `apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: typo}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {preset: opneai, secret: {env: OPENAI_API_KEY}}
`
	_, errs := policies.NewScheme().Decode("/policies/p.yaml", []byte(src))
	require.Len(t, errs, 1)
	msg := errs[0].Error()
	require.Contains(t, msg, "spec.apiKey.preset")
	for name := range credentialinjector.Presets {
		require.Contains(t, msg, name)
	}
}
