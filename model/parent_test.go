package model

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const parentChain = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: edge, namespace: team-a}
spec:
  mode: Parent
  parentRef: {name: mid, namespace: default}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: mid}
spec:
  mode: Parent
  addresses: [{ip: 10.0.0.1}, {hostname: mid.corp.example}]
  parentRef: {name: top, sectionName: children, port: 443, tls: {}}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: top}
spec:
  addresses: [{hostname: top.corp.example}]
  listeners:
  - {name: local, port: 8080, protocol: HTTP}
  - {name: children, port: 9080, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs:
  - {name: edge, namespace: team-a}
  - {name: mid}
  - {name: top, sectionName: children}
  rules: [{backendRefs: [{name: openai}]}]
`

func TestParentChainResolves(t *testing.T) {
	cfg, errs := BuildConfig(decodeFiles(t, map[string]string{"chain.yaml": parentChain}), Settings{})
	require.Empty(t, rendered(errs))
	edge, mid, top := cfg.Gateway("team-a/edge"), cfg.Gateway("mid"), cfg.Gateway("top")

	require.Same(t, mid, edge.Parent.Gateway)
	require.Equal(t, "http", edge.Parent.Listener.Name)
	require.Equal(t, uint32(8080), edge.Parent.Port)
	require.True(t, edge.Parent.HasHostname())
	require.Nil(t, edge.Parent.TLS)

	require.Same(t, top, mid.Parent.Gateway)
	require.Equal(t, "children", mid.Parent.Listener.Name)
	require.Equal(t, uint32(443), mid.Parent.Port, "parentRef.port overrides the listener's")
	require.Equal(t, &ParentHopTLS{SNI: "top.corp.example", SANs: []SAN{{Type: "DNS", Value: "top.corp.example"}}}, mid.Parent.TLS)

	require.Nil(t, top.Parent)
	require.Equal(t, []Ref{edge.Ref}, mid.Children)
	require.Equal(t, []Ref{mid.Ref}, top.Children)
	require.Empty(t, edge.Children)
}

func TestParentMustServeForwardedRoutes(t *testing.T) {
	// The route attaches to the top gateway's other listener: the middle
	// gateway would forward to "children", which does not serve it.
	src := parentChain[:len(parentChain)-len("  - {name: top, sectionName: children}\n  rules: [{backendRefs: [{name: openai}]}]\n")] +
		"  - {name: top, sectionName: local}\n  rules: [{backendRefs: [{name: openai}]}]\n"
	_, errs := BuildConfig(decodeFiles(t, map[string]string{"chain.yaml": src}), Settings{})
	require.Equal(t, []string{
		`chain.yaml:38: HTTPRoute/chat: spec.parentRefs[1]: Gateway/mid forwards this route to Gateway/top (listener "children"), which does not serve it: add {name: top, sectionName: children} to spec.parentRefs, or detach the route from Gateway/mid`,
	}, rendered(errs))
}
