package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

// options is one load scenario.
type options struct {
	envoys   int
	delta    float64
	gateways int
	routes   int
	edits    int
	edit     string
	// editGateways is how many gateways (the first ones) each edit
	// changes; the Envoys of the others must get nothing.
	editGateways int
	targets      []string
	tollgate     string
	parallel     int
	timeout      time.Duration
	pause        time.Duration
	output       string
	workDir      string
	logLevel     string
	// agent is the URL of a tollgate-load agent that runs the targets on
	// its machine (agent.go); agentToken authenticates to it.
	agent          string
	agentTokenFile string
	agentToken     string
	// xdsHost is the address the targets' xDS servers listen on: loopback,
	// or the agent's --xds-host.
	xdsHost string
}

// Edit methods.
const (
	editRename  = "rename"
	editInPlace = "inplace"
	editAPI     = "api"
)

// Targets.
const (
	targetTollgate = "tollgate"
	targetFloor    = "floor"
)

func newRootCommand() *cobra.Command {
	o := options{}
	cmd := &cobra.Command{
		Use:   "tollgate-load",
		Short: "measure a fleet's convergence on a policy edit, against tollgate and a bare go-control-plane server",
		Long: `tollgate-load starts tollgate on a generated policy set (GATEWAYS gateways of
ROUTES routes each, every route with its own hostname and Backend), connects
ENVOYS simulated Envoys spread evenly over the gateways, then edits one
HTTPRoute of every gateway EDITS times and times each Envoy from the edit to
its ACK of the new route configuration. It reports p50, p99 and max, and
tollgate's memory per stream and CPU per edit from its /metrics. The same
scenario then runs against a bare go-control-plane server serving the same
resources, and the ratio is printed.

By default everything runs on this machine, tollgate and the floor in
processes of their own; the clients share the cores, so run it on an otherwise
idle machine and compare figures of the same run only. With --agent, tollgate
and the floor run on another machine, under "tollgate-load agent" there, and
this machine only runs the Envoys: the figures are then the control plane's
alone.`,
		Example: `  tollgate-load --envoys 1000
  tollgate-load --envoys 10000 --gateways 10 --edit api -o json
  tollgate-load --envoys 10000 --agent http://10.0.0.5:7070 --agent-token-file agent.token`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(); err != nil {
				return err
			}
			return run(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.envoys, "envoys", 1000, "simulated Envoys (ADS streams, one connection each)")
	f.Float64Var(&o.delta, "delta", 0.5, "fraction of the Envoys on Delta ADS; the others use State of the World")
	f.IntVar(&o.gateways, "gateways", 1, "gateways; the Envoys are spread evenly over them")
	f.IntVar(&o.routes, "routes", 100, "routes per gateway, each with its own hostname and Backend")
	f.IntVar(&o.edits, "edits", 10, "edits measured, one after the other")
	f.IntVar(&o.editGateways, "edit-gateways", 0, "gateways each edit changes, the first ones (default: all); the Envoys of the others must receive nothing")
	f.StringVar(&o.edit, "edit", editRename, "how an edit reaches tollgate: rename (a file saved atomically, as editors and config management do), inplace (the file rewritten in place) or api (a PUT through the HTTP API, one per gateway)")
	f.StringSliceVar(&o.targets, "target", []string{targetTollgate, targetFloor}, "what to measure, in order: tollgate, floor (a bare go-control-plane server with the same resources), or both")
	f.StringVar(&o.tollgate, "tollgate", "", "the tollgate binary (default: tollgate next to this binary, else on PATH)")
	f.IntVar(&o.parallel, "connect-parallel", 200, "Envoys connecting at once while the fleet is built")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long the fleet may take to connect, or to converge on one edit")
	f.DurationVar(&o.pause, "pause", 500*time.Millisecond, "quiet time between edits")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.StringVar(&o.logLevel, "tollgate-log-level", "warn", "tollgate's --log-level (its log is tollgate.log in the work directory; info logs every Envoy's connection)")
	f.StringVar(&o.workDir, "work-dir", "", "directory for the policies, tollgate's state and logs (default: a new temporary directory, removed afterwards)")
	f.StringVar(&o.agent, "agent", "", "URL of a tollgate-load agent (tollgate-load agent --help) that runs tollgate and the floor on its machine; this process then runs only the Envoys")
	f.StringVar(&o.agentTokenFile, "agent-token-file", "", "file holding the agent's token (the agent's --token-file); required with --agent")
	cmd.AddCommand(newFloorCommand(), newAgentCommand())
	return cmd
}

// complete checks the options and finds the tollgate binary.
func (o *options) complete() error {
	switch {
	case o.envoys < 1:
		return fmt.Errorf("--envoys must be at least 1")
	case o.delta < 0 || o.delta > 1:
		return fmt.Errorf("--delta is a fraction, between 0 and 1")
	case o.parallel < 1:
		return fmt.Errorf("--connect-parallel must be at least 1")
	case o.output != "text" && o.output != "json":
		return fmt.Errorf("--output %q: want text or json", o.output)
	}
	if err := o.validateScenario(); err != nil {
		return err
	}
	if err := o.validateTargets(); err != nil {
		return err
	}
	if o.agent != "" {
		return o.readAgentToken()
	}
	o.xdsHost = "127.0.0.1"
	if !slices.Contains(o.targets, targetTollgate) {
		return nil
	}
	return o.findTollgate()
}

// validateScenario checks what the control plane's side of a scenario
// needs, and makes --edit-gateways 0 mean every gateway; an agent runs it
// again on what a driver asks of it.
func (o *options) validateScenario() error {
	switch {
	case o.gateways < 1 || o.gateways > 999:
		return fmt.Errorf("--gateways must be between 1 and 999")
	case o.routes < 1:
		return fmt.Errorf("--routes must be at least 1")
	case o.edits < 1:
		return fmt.Errorf("--edits must be at least 1")
	case o.editGateways < 0 || o.editGateways > o.gateways:
		return fmt.Errorf("--edit-gateways must be between 1 and --gateways (%d); 0 means all", o.gateways)
	case !slices.Contains([]string{editRename, editInPlace, editAPI}, o.edit):
		return fmt.Errorf("--edit %q: want rename, inplace or api", o.edit)
	case !slices.Contains([]string{"debug", "info", "warn", "error"}, o.logLevel):
		return fmt.Errorf("--tollgate-log-level %q: want debug, info, warn or error", o.logLevel)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be positive")
	}
	if o.editGateways == 0 {
		o.editGateways = o.gateways
	}
	return nil
}

// validateTargets checks --target.
func (o *options) validateTargets() error {
	if len(o.targets) == 0 {
		return fmt.Errorf("--target: give tollgate, floor or both")
	}
	for _, t := range o.targets {
		if t != targetTollgate && t != targetFloor {
			return fmt.Errorf("--target %q: want tollgate or floor", t)
		}
	}
	return nil
}

// findTollgate checks --tollgate, or finds the binary next to this one or
// on PATH.
func (o *options) findTollgate() error {
	if o.tollgate != "" {
		if !isExecutable(o.tollgate) {
			return fmt.Errorf("--tollgate %s is not an executable file", o.tollgate)
		}
		return nil
	}
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "tollgate"); isExecutable(p) {
			o.tollgate = p
			return nil
		}
	}
	p, err := exec.LookPath("tollgate")
	if err != nil {
		return fmt.Errorf("no tollgate binary next to tollgate-load or on PATH: build it (go build -o bin/ ./cmd/...) or give --tollgate")
	}
	o.tollgate = p
	return nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
