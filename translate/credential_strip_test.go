package translate_test

import (
	"testing"

	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// TestWorkloadCredentialsAreStrippedBeforeInjection guards the README's
// promise that a workload's own provider key never reaches a provider
// through a backend that injects one: on every golden case and example,
// every cluster that injects or signs first removes every workload
// credential header and query parameter (model.WorkloadCredentialHeaders,
// model.WorkloadCredentialQueryParams), in a filter that runs before the
// credential's.
func TestWorkloadCredentialsAreStrippedBeforeInjection(t *testing.T) {
	checked := 0
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range out.Gateways {
			for _, c := range g.Clusters {
				opts := &httpv3.HttpProtocolOptions{}
				if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
					require.NoError(t, a.UnmarshalTo(opts))
				}
				removedHeaders, removedParams := map[string]bool{}, map[string]bool{}
				for _, f := range opts.GetHttpFilters() {
					if isCredentialFilter(f.GetTypedConfig()) {
						checked++
						where := name + " gateway " + g.Key + " cluster " + c.GetName() + " filter " + f.GetName()
						for _, h := range model.WorkloadCredentialHeaders {
							require.True(t, removedHeaders[h], "%s: the workload's %s header is not removed before the credential is added", where, h)
						}
						for _, q := range model.WorkloadCredentialQueryParams {
							require.True(t, removedParams[q], "%s: the workload's %s query parameter is not removed before the credential is added", where, q)
						}
						continue
					}
					hm := &headermutationv3.HeaderMutation{}
					if !f.GetTypedConfig().MessageIs(hm) {
						continue
					}
					require.NoError(t, f.GetTypedConfig().UnmarshalTo(hm))
					for _, m := range hm.GetMutations().GetRequestMutations() {
						if r := m.GetRemove(); r != "" {
							removedHeaders[r] = true
						}
					}
					for _, m := range hm.GetMutations().GetQueryParameterMutations() {
						if r := m.GetRemove(); r != "" {
							removedParams[r] = true
						}
					}
				}
			}
		}
	}
	require.NotZero(t, checked, "no credential filter was checked")
}
