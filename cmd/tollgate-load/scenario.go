package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
)

// The scenario's policy set: modeltest's generated gateways, plus one
// HTTPRoute per gateway that the edits change. Edit k sets that route's
// request timeout to editBase+k seconds (k = 0 is the initial state), so
// that a client recognises each edit in the route configuration it gets.
const (
	editFile     = "edit.yaml"
	editHostname = "load-edit.llm.internal"
	editBase     = 1000
)

// gatewayName is the name of gateway g, as modeltest generates it; it is
// also its key, the cluster its Envoys name in their node.
func gatewayName(g int) string { return fmt.Sprintf("gw-%03d", g) }

// editRouteRef names the edited route of gateway g.
func editRouteRef(g int) model.Ref {
	return model.Ref{Kind: "HTTPRoute", Namespace: model.DefaultNamespace, Name: gatewayName(g) + "-load-edit"}
}

// editRouteYAML is the edited route of gateway g at edit k.
func editRouteYAML(g, k int) []byte {
	return fmt.Appendf(nil, `apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: %s}
spec:
  parentRefs: [{name: %s}]
  hostnames: [%s]
  rules:
  - backendRefs: [{name: %s-backend-0}]
    timeouts: {request: %ds}
`, editRouteRef(g).Name, gatewayName(g), editHostname, gatewayName(g), editBase+k)
}

// editYAML is the edit file at edit k: every gateway's edited route, at
// edit k for the first edited gateways and as first written for the
// others.
func editYAML(gateways, edited, k int) []byte {
	var b bytes.Buffer
	for g := range gateways {
		if g > 0 {
			b.WriteString("---\n")
		}
		b.Write(editRouteYAML(g, editAt(g, edited, k)))
	}
	return b.Bytes()
}

// editAt is the edit gateway g's route holds at edit k when each edit
// changes the first edited gateways.
func editAt(g, edited, k int) int {
	if g < edited {
		return k
	}
	return 0
}

// writeScenario writes the gateways' files into dir, and the edit file
// unless the edits go through the API.
func writeScenario(dir string, o options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range modeltest.GenerateGateways(o.gateways, o.routes, "600s") {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	if o.edit == editAPI {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, editFile), editYAML(o.gateways, o.editGateways, 0), 0o644)
}

// editOf returns the edit a route configuration holds, or -1 if it holds
// none: the request timeout of the edited route.
func editOf(rc *routev3.RouteConfiguration) int {
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if d != editHostname {
				continue
			}
			for _, r := range vh.GetRoutes() {
				if t := r.GetRoute().GetTimeout(); t != nil {
					return int(t.AsDuration()/time.Second) - editBase
				}
			}
			return -1
		}
	}
	return -1
}
