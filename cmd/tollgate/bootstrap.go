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
	f.StringVar(&o.XDSAddr, "xds-addr", "127.0.0.1:18000", "tollgate's xDS address")
	f.Uint32Var(&o.AdminPort, "admin-port", 9901, "Envoy admin port, bound to 127.0.0.1")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (Delta) xDS")
	return cmd
}
