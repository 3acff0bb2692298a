// Package bootstrap renders the Envoy bootstrap files that connect an Envoy
// to tollgate. The templates live beside this file and are embedded.
package bootstrap

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"text/template"
)

//go:embed *.yaml.tmpl
var templates embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	// quote renders a YAML-safe scalar (JSON strings are YAML strings), so
	// that no node ID or gateway name can inject YAML.
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
}).ParseFS(templates, "*.yaml.tmpl"))

// Options are the inputs of a bootstrap.
type Options struct {
	// Gateway is the gateway key (node.cluster) the Envoy serves.
	Gateway string
	// NodeID identifies this Envoy; unique per Envoy.
	NodeID string
	// XDSAddr is tollgate's xDS address, host:port.
	XDSAddr string
	// AdminPort is Envoy's admin port on 127.0.0.1.
	AdminPort uint32
	// Delta selects incremental xDS (DELTA_GRPC) instead of State of the
	// World.
	Delta bool
}

type values struct {
	Options
	XDSHost     string
	XDSPort     uint32
	XDSHostIsIP bool
}

// Render returns the bootstrap YAML.
func Render(o Options) ([]byte, error) {
	if o.Gateway == "" {
		return nil, fmt.Errorf("--gateway is required: the name of the Gateway this Envoy serves")
	}
	if o.NodeID == "" {
		return nil, fmt.Errorf("--node-id is required: a unique name for this Envoy, e.g. its hostname")
	}
	host, portStr, err := net.SplitHostPort(o.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("--xds-addr %q: want host:port: %w", o.XDSAddr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("--xds-addr %q: port must be 1-65535", o.XDSAddr)
	}
	if o.AdminPort == 0 {
		o.AdminPort = 9901
	}
	v := values{Options: o, XDSHost: host, XDSPort: uint32(port), XDSHostIsIP: net.ParseIP(host) != nil}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, "endpoint.yaml.tmpl", v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
