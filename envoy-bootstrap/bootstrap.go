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

	// XDSCAFile, XDSCertFile and XDSKeyFile are paths on the Envoy host:
	// the CA bundle that tollgate's server certificate must chain to, and
	// the client certificate and key the Envoy proves its identity with.
	// Set together, they make the xDS connection mutual TLS.
	XDSCAFile   string
	XDSCertFile string
	XDSKeyFile  string
	// XDSServerName is the name tollgate's certificate must carry; by
	// default the host of XDSAddr. A DNS name is also sent as SNI and
	// matched as a DNS SAN; an IP address is matched as an IP SAN.
	XDSServerName string
}

type values struct {
	Options
	XDSHost     string
	XDSPort     uint32
	XDSHostIsIP bool
	// TLS is set when the xDS connection uses mutual TLS.
	TLS bool
	// SNI is the server name sent, empty for an IP address.
	SNI string
	// SANType is how the server name is matched: DNS or IP_ADDRESS.
	SANType string
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
	if err := v.tls(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, "endpoint.yaml.tmpl", v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tls checks the xDS TLS options and derives what the template needs.
func (v *values) tls() error {
	set := 0
	for _, f := range []string{v.XDSCAFile, v.XDSCertFile, v.XDSKeyFile} {
		if f != "" {
			set++
		}
	}
	switch {
	case set == 0:
		if v.XDSServerName != "" {
			return fmt.Errorf("--xds-server-name needs --xds-ca-file, --xds-cert-file and --xds-key-file")
		}
		return nil
	case set < 3:
		return fmt.Errorf("--xds-ca-file, --xds-cert-file and --xds-key-file go together: tollgate's xDS TLS always verifies the Envoy's client certificate")
	}
	v.TLS = true
	if v.XDSServerName == "" {
		v.XDSServerName = v.XDSHost
	}
	if ip := net.ParseIP(v.XDSServerName); ip != nil {
		// SNI carries host names only (RFC 6066), so an address is
		// verified as an IP SAN without SNI.
		v.SANType, v.XDSServerName = "IP_ADDRESS", ip.String()
		return nil
	}
	v.SANType, v.SNI = "DNS", v.XDSServerName
	return nil
}
