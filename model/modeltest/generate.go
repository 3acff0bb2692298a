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

// File is one generated policy file.
type File struct {
	Name string
	Data []byte
}

// maxGeneratedFile keeps generated files well below the size tollgate
// accepts for one policy file.
const maxGeneratedFile = 1 << 20

// GenerateFiles is GenerateYAML(n) split into files of at most 1 MiB, at
// document boundaries, as an operator with that many objects would keep
// them.
func GenerateFiles(n int) []File {
	sep := []byte("\n---\n")
	docs := bytes.Split(GenerateYAML(n), sep)
	var files []File
	var cur bytes.Buffer
	flush := func() {
		if cur.Len() > 0 {
			cur.WriteByte('\n')
			files = append(files, File{Name: fmt.Sprintf("generated-%03d.yaml", len(files)), Data: bytes.Clone(cur.Bytes())})
			cur.Reset()
		}
	}
	for _, d := range docs {
		d = bytes.TrimRight(d, "\n")
		if cur.Len() > 0 && cur.Len()+len(sep)+len(d) > maxGeneratedFile {
			flush()
		}
		if cur.Len() > 0 {
			cur.Write(sep)
		}
		cur.Write(d)
	}
	flush()
	return files
}

// GenerateGateways is a policy set of gateways gateways with routes routes
// each, as GenerateYAML generates them (each route its own hostname, two
// rules and its own Backend), one file per gateway: gateway-NNN.yaml holds
// Gateway gw-NNN (port 10080), its backends and its routes, all named
// after the gateway. timeout is every first rule's request timeout, so
// that an edit can change one gateway's file.
func GenerateGateways(gateways, routes int, timeout string) []File {
	files := make([]File, 0, gateways)
	for g := range gateways {
		files = append(files, GatewayFile(g, routes, timeout))
	}
	return files
}

// GatewayFile is the file of gateway g of GenerateGateways.
func GatewayFile(g, routes int, timeout string) File {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw-%03d}\nspec:\n  listeners:\n  - {name: http, port: 10080, protocol: HTTP}\n", g)
	for i := range routes {
		fmt.Fprintf(&b, `---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: gw-%03d-backend-%d}
spec: {provider: openai-compatible, hostname: api-%d-%d.provider.example, region: us-east-1}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: gw-%03d-route-%d}
spec:
  parentRefs: [{name: gw-%03d}]
  hostnames: [svc-%d.llm.internal]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v1/chat/completions}
      method: POST
    backendRefs: [{name: gw-%03d-backend-%d}]
    timeouts: {request: %s}
  - backendRefs: [{name: gw-%03d-backend-%d}]
`, g, i, g, i, g, i, g, i, g, i, timeout, g, i)
	}
	return File{Name: fmt.Sprintf("gateway-%03d.yaml", g), Data: b.Bytes()}
}
