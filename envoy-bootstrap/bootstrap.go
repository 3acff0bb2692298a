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
	"strings"
	"text/template"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// SpireAgentCluster is the static cluster of a bootstrap rendered with
// SPIFFESocket: the local SPIRE agent's SDS API (on its Workload API
// socket), from which Envoy takes its SVID and the trust bundles.
// Listener and cluster TLS served over ADS name it as their SDS source.
const SpireAgentCluster = "spire_agent"

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
	// XDSAddr is tollgate's xDS address, host:port, or the addresses of
	// several replicas separated by commas: the Envoy opens its ADS stream
	// to one of them, and to another when that one goes away.
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

	// SPIFFESocket is the path on the Envoy host of the SPIRE agent's
	// Workload API socket. With it, the xDS connection is mutual TLS with
	// the Envoy's SVID and the trust bundle from the agent's SDS
	// (SpireAgentCluster); instead of the three files above.
	SPIFFESocket string
	// SPIFFEID is the Envoy's own SPIFFE ID: the name of its SVID in the
	// agent's SDS, and the identity tollgate binds to gateways.
	SPIFFEID string
	// XDSSPIFFEID is tollgate's SPIFFE ID, which tollgate's certificate
	// must carry as its URI SAN.
	XDSSPIFFEID string
}

// SPIFFEBundleName is the SDS name under which the SPIRE agent serves the
// trust bundle of td: the trust domain's SPIFFE ID, "spiffe://<td>"; it
// works for federated trust domains too, unlike the agent's
// default_bundle_name ("ROOTCA"), which names its own trust domain only.
func SPIFFEBundleName(td spiffeid.TrustDomain) string { return td.IDString() }

// xdsEndpoint is one tollgate replica's xDS address.
type xdsEndpoint struct {
	Host string
	Port uint32
}

type values struct {
	Options
	XDSEndpoints []xdsEndpoint
	XDSHost      string // the first endpoint's
	XDSHostIsIP  bool   // every endpoint is an IP address
	// TLS is set when the xDS connection uses mutual TLS.
	TLS bool
	// SNI is the server name sent, empty for an IP address.
	SNI string
	// SANType is how the server name is matched: DNS or IP_ADDRESS.
	SANType string
	// SPIFFE is set when the xDS connection takes its TLS from the SPIRE
	// agent; BundleName is the SDS name of tollgate's trust bundle.
	SPIFFE            bool
	BundleName        string
	SpireAgentCluster string
}

// Render returns the bootstrap YAML.
func Render(o Options) ([]byte, error) {
	if o.Gateway == "" {
		return nil, fmt.Errorf("--gateway is required: the name of the Gateway this Envoy serves")
	}
	if o.NodeID == "" {
		return nil, fmt.Errorf("--node-id is required: a unique name for this Envoy, e.g. its hostname")
	}
	if o.AdminPort == 0 {
		o.AdminPort = 9901
	}
	v := values{Options: o, XDSHostIsIP: true}
	hosts := map[string]bool{}
	for _, addr := range strings.Split(o.XDSAddr, ",") {
		addr = strings.TrimSpace(addr)
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--xds-addr %q: want host:port (or several, separated by commas): %w", addr, err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("--xds-addr %q: port must be 1-65535", addr)
		}
		v.XDSEndpoints = append(v.XDSEndpoints, xdsEndpoint{Host: host, Port: uint32(port)})
		v.XDSHostIsIP = v.XDSHostIsIP && net.ParseIP(host) != nil
		hosts[host] = true
	}
	v.XDSHost = v.XDSEndpoints[0].Host
	if len(hosts) > 1 && o.XDSServerName == "" && (o.XDSCAFile != "" || o.XDSCertFile != "" || o.XDSKeyFile != "") {
		return nil, fmt.Errorf("--xds-addr names several hosts, and the Envoy verifies one name on every replica's certificate: give it with --xds-server-name (a DNS name all replicas' certificates carry)")
	}
	if err := v.spiffe(); err != nil {
		return nil, err
	}
	if err := v.tls(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, "endpoint.yaml.tmpl", v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spiffe checks the SPIFFE options and derives what the template needs.
func (v *values) spiffe() error {
	if v.SPIFFESocket == "" {
		if v.SPIFFEID != "" || v.XDSSPIFFEID != "" {
			return fmt.Errorf("--spiffe-id and --xds-spiffe-id need --spiffe-socket: the SPIRE agent's Workload API socket on the Envoy host")
		}
		return nil
	}
	switch {
	case v.XDSCAFile != "" || v.XDSCertFile != "" || v.XDSKeyFile != "" || v.XDSServerName != "":
		return fmt.Errorf("--spiffe-socket and --xds-ca-file/--xds-cert-file/--xds-key-file/--xds-server-name are mutually exclusive: with --spiffe-socket the Envoy's certificate and trust bundle come from the SPIRE agent and tollgate is verified by --xds-spiffe-id")
	case !strings.HasPrefix(v.SPIFFESocket, "/"):
		return fmt.Errorf("--spiffe-socket %q: want the absolute path of the SPIRE agent's socket on the Envoy host, e.g. /run/spire/sockets/agent.sock", v.SPIFFESocket)
	case v.SPIFFEID == "":
		return fmt.Errorf("--spiffe-id is required with --spiffe-socket: this Envoy's SPIFFE ID, the name of its SVID in the SPIRE agent's SDS")
	case v.XDSSPIFFEID == "":
		return fmt.Errorf("--xds-spiffe-id is required with --spiffe-socket: tollgate's SPIFFE ID, which its certificate must carry (otherwise any workload of the trust domain could pose as tollgate)")
	}
	if _, err := spiffeid.FromString(v.SPIFFEID); err != nil {
		return fmt.Errorf("--spiffe-id %q: %w", v.SPIFFEID, err)
	}
	server, err := spiffeid.FromString(v.XDSSPIFFEID)
	if err != nil {
		return fmt.Errorf("--xds-spiffe-id %q: %w", v.XDSSPIFFEID, err)
	}
	v.SPIFFE, v.BundleName, v.SpireAgentCluster = true, SPIFFEBundleName(server.TrustDomain()), SpireAgentCluster
	return nil
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
