// Package modeltest generates policy sets of any size for benchmarks and
// load tests.
package modeltest

import (
	"bytes"
	"fmt"
)

// GenerateYAML returns a policy set with one gateway and n HTTPRoutes, each
// with its own hostname, two rules and its own Backend: nine in ten are TLS
// providers reached by DNS, one in ten an in-house server with two static
// addresses (served over EDS).
func GenerateYAML(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners:
  - {name: http, port: 10080, protocol: HTTP}
`)
	for i := 0; i < n; i++ {
		if i%10 == 9 {
			fmt.Fprintf(&b, `---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: backend-%d}
spec:
  hostname: model-%d.internal
  port: 8000
  protocol: HTTP/2
  addresses: [{ip: 10.%d.%d.1}, {ip: 10.%d.%d.2}]
`, i, i, (i/256)%256, i%256, (i/256)%256, i%256)
		} else {
			fmt.Fprintf(&b, `---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: backend-%d}
spec: {provider: openai-compatible, hostname: api-%d.provider.example, region: us-east-1}
`, i, i)
		}
		fmt.Fprintf(&b, `---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: route-%d}
spec:
  parentRefs: [{name: egress}]
  hostnames: [svc-%d.llm.internal]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v1/chat/completions}
      method: POST
    backendRefs: [{name: backend-%d}]
    timeouts: {request: 600s}
  - backendRefs: [{name: backend-%d}]
`, i, i, i, i)
	}
	return b.Bytes()
}

// EgressToOpenAI is the smallest complete policy set tests build on:
// Gateway egress (one HTTP listener on 10080), Backend openai (the openai
// preset) and HTTPRoute r sending everything to it. It ends without a
// document separator.
const EgressToOpenAI = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}]}]
`
