package main

import (
	"github.com/spf13/cobra"

	bootstrap "github.com/tollgate-dev/tollgate/envoy-bootstrap"
)

func newBootstrapCmd() *cobra.Command {
	var o bootstrap.Options
	cmd := &cobra.Command{
		Use:   "bootstrap --gateway NAME --node-id ID --xds-addr HOST:PORT",
		Short: "Print the Envoy bootstrap that connects an Envoy to tollgate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := bootstrap.Render(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Gateway, "gateway", "", "gateway this Envoy serves (its node.cluster)")
	f.StringVar(&o.NodeID, "node-id", "", "unique ID of this Envoy, e.g. the VM's hostname")
	f.StringVar(&o.XDSAddr, "xds-addr", "127.0.0.1:18000", "tollgate's xDS address, or the addresses of several replicas separated by commas")
	f.Uint32Var(&o.AdminPort, "admin-port", 9901, "Envoy admin port, bound to 127.0.0.1")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (Delta) xDS")
	f.StringVar(&o.XDSCAFile, "xds-ca-file", "", "path on the Envoy host of the CA bundle tollgate's certificate must chain to; with --xds-cert-file and --xds-key-file, xDS uses mutual TLS")
	f.StringVar(&o.XDSCertFile, "xds-cert-file", "", "path on the Envoy host of its client certificate (PEM), whose URI or DNS SAN tollgate binds to gateways")
	f.StringVar(&o.XDSKeyFile, "xds-key-file", "", "path on the Envoy host of the client certificate's private key (PEM)")
	f.StringVar(&o.SPIFFESocket, "spiffe-socket", "", "path on the Envoy host of the SPIRE agent's Workload API socket: xDS uses mutual TLS with the Envoy's SVID and trust bundle from the agent's SDS (cluster "+bootstrap.SpireAgentCluster+"); instead of --xds-ca-file, --xds-cert-file and --xds-key-file")
	f.StringVar(&o.SPIFFEID, "spiffe-id", "", "with --spiffe-socket: this Envoy's SPIFFE ID (its SVID's name in the agent's SDS, bound to gateways in tollgate's xds-identities)")
	f.StringVar(&o.XDSSPIFFEID, "xds-spiffe-id", "", "with --spiffe-socket: tollgate's SPIFFE ID, which its certificate must carry")
	f.StringVar(&o.XDSServerName, "xds-server-name", "", "name tollgate's certificate must carry (SNI and SAN); default: the host of --xds-addr")
	return cmd
}
