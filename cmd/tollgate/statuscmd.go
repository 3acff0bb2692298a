package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/xds"
)

// statusOptions are the flags of tollgate status.
type statusOptions struct {
	clientOptions
	Namespace string
}

// newStatusCmd returns tollgate status: whether each object is applied,
// which Envoys have the configuration, and why not.
func newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether policies are applied and which Envoys have them",
		Long: "status prints every object tollgate serves with its source, generation and conditions (each False\n" +
			"condition with its reason and message), then every connected Envoy: its gateway, stream and release,\n" +
			"whether it acknowledged every type tollgate sent it (converged) or which types lag, and the last\n" +
			"configuration it rejected (NACK) with the objects that produced it. -n shows one namespace's objects\n" +
			"and the Envoys of its gateways. Reads need no credentials.",
		Example: "  tollgate status\n  tollgate status -n team-a -o json",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, &o) },
	}
	addClientFlags(cmd, &o.clientOptions)
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "show only this namespace (default: all)")
	return cmd
}

// statusObject is one entry of GET /status/objects.
type statusObject struct {
	Object     string         `json:"object"`
	Kind       string         `json:"kind"`
	Namespace  string         `json:"namespace"`
	Name       string         `json:"name"`
	Source     string         `json:"source"`
	Generation int64          `json:"generation"`
	Conditions []apiCondition `json:"conditions"`
}

// statusReport is what status gathers: the raw JSON of objects and nodes
// (printed as is for -o json) beside their decoded form.
type statusReport struct {
	objectsRaw []json.RawMessage
	objects    []statusObject
	nodesRaw   []json.RawMessage
	nodes      []xds.NodeStatus
	lastNack   *xds.NackRecord
}

// runStatus fetches and prints the status.
func runStatus(cmd *cobra.Command, o *statusOptions) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	rep, err := fetchStatus(cmd, c, o.Namespace)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if o.Output != "text" {
		out := map[string]any{"objects": nonNil(rep.objectsRaw), "nodes": nonNil(rep.nodesRaw)}
		if rep.lastNack != nil {
			out["last_nack"] = rep.lastNack
		}
		return printStructured(w, o.Output, out)
	}
	printStatusObjects(w, rep.objects, o.Namespace)
	fmt.Fprintln(w)
	printStatusNodes(w, rep.nodes, rep.lastNack, time.Now())
	return nil
}

// nonNil makes an empty list print as [] rather than null.
func nonNil(items []json.RawMessage) []json.RawMessage {
	if items == nil {
		return []json.RawMessage{}
	}
	return items
}

// fetchStatus reads /status/objects and /status/nodes and keeps what is
// in namespace ns (everything when ns is empty).
func fetchStatus(cmd *cobra.Command, c *apiClient, ns string) (*statusReport, error) {
	ctx := cmd.Context()
	var objs struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if err := c.do(ctx, http.MethodGet, "/status/objects", nil, &objs); err != nil {
		return nil, err
	}
	var nodes struct {
		Nodes    []json.RawMessage `json:"nodes"`
		LastNack *xds.NackRecord   `json:"last_nack"`
	}
	if err := c.do(ctx, http.MethodGet, "/status/nodes", nil, &nodes); err != nil {
		return nil, err
	}
	rep := &statusReport{lastNack: nodes.LastNack}
	for _, raw := range objs.Objects {
		var so statusObject
		if err := json.Unmarshal(raw, &so); err != nil {
			return nil, fmt.Errorf("unexpected answer from /status/objects: %w", err)
		}
		if ns == "" || namespaceOf(so.Namespace) == ns {
			rep.objectsRaw, rep.objects = append(rep.objectsRaw, raw), append(rep.objects, so)
		}
	}
	for _, raw := range nodes.Nodes {
		var n xds.NodeStatus
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("unexpected answer from /status/nodes: %w", err)
		}
		if ns == "" || gatewayNamespace(n.Gateway) == ns {
			rep.nodesRaw, rep.nodes = append(rep.nodesRaw, raw), append(rep.nodes, n)
		}
	}
	if rep.lastNack != nil && ns != "" && gatewayNamespace(rep.lastNack.Gateway) != ns {
		rep.lastNack = nil
	}
	return rep, nil
}

// namespaceOf is ns, or the default namespace when it is empty.
func namespaceOf(ns string) string {
	if ns == "" {
		return model.DefaultNamespace
	}
	return ns
}

// gatewayNamespace is the namespace of a gateway key (model.GatewayKey):
// namespace/name, or a bare name in the default namespace.
func gatewayNamespace(key string) string {
	if ns, _, ok := strings.Cut(key, "/"); ok {
		return ns
	}
	return model.DefaultNamespace
}

// printStatusObjects prints one line per object: its name, source,
// generation and the types of its True conditions, followed by one line
// per condition that is not True, with its reason and message.
func printStatusObjects(w io.Writer, objs []statusObject, ns string) {
	notReady := 0
	rows := make([][]string, len(objs))
	details := make([][]string, len(objs))
	for i, o := range objs {
		var ok []string
		for _, c := range o.Conditions {
			if c.Status == "True" {
				ok = append(ok, c.Type)
				continue
			}
			details[i] = append(details[i], fmt.Sprintf("    %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
		if len(details[i]) > 0 {
			notReady++
		}
		rows[i] = []string{o.Object, sourceText(o.Source), "generation " + strconv.FormatInt(o.Generation, 10), strings.Join(ok, " ")}
	}
	switch {
	case len(objs) == 0 && ns != "":
		fmt.Fprintf(w, "OBJECTS: none in namespace %s\n", ns)
		return
	case len(objs) == 0:
		fmt.Fprintln(w, "OBJECTS: none")
		return
	}
	fmt.Fprintf(w, "OBJECTS: %d, %d with a condition that is not True\n", len(objs), notReady)
	for i, line := range alignRows(rows) {
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		for _, d := range details[i] {
			fmt.Fprintln(w, d)
		}
	}
}

// printStatusNodes prints one line per connected Envoy: node, gateway,
// stream, release and whether it ACKed everything it was sent, then its
// last NACK and what its release is too old for.
func printStatusNodes(w io.Writer, nodes []xds.NodeStatus, last *xds.NackRecord, now time.Time) {
	converged := 0
	rows := make([][]string, len(nodes))
	details := make([][]string, len(nodes))
	for i, n := range nodes {
		state, ok := convergence(n)
		if ok {
			converged++
		}
		gw := "gateway " + n.Gateway
		if !n.KnownGateway {
			gw += " (no Gateway defines it: it gets no configuration)"
		}
		rows[i] = []string{n.NodeID, gw, n.Stream, "envoy " + orDash(n.EnvoyVersion), state}
		if n.LastNack != nil {
			details[i] = append(details[i], nackLines(n.LastNack, now)...)
		}
		for _, p := range n.Problems {
			details[i] = append(details[i], fmt.Sprintf("    too old: %s needs Envoy %s%s: %s", p.Feature, p.Needs, objectSuffix(p.Object), p.Remedy))
		}
	}
	if len(nodes) == 0 {
		fmt.Fprintln(w, "ENVOY NODES: none connected")
	} else {
		fmt.Fprintf(w, "ENVOY NODES: %d, %d converged\n", len(nodes), converged)
	}
	for i, line := range alignRows(rows) {
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		for _, d := range details[i] {
			fmt.Fprintln(w, d)
		}
	}
	if last != nil && !slices.ContainsFunc(nodes, func(n xds.NodeStatus) bool { return n.NodeID == last.NodeID }) {
		fmt.Fprintf(w, "last NACK of a node no longer connected: %s (gateway %s)\n", last.NodeID, last.Gateway)
		for _, l := range nackLines(&last.Nack, now) {
			fmt.Fprintln(w, l)
		}
	}
}

// convergence says whether a node ACKed every type at the version it was
// sent, or which types lag.
func convergence(n xds.NodeStatus) (string, bool) {
	if len(n.Sent) == 0 {
		return "nothing sent yet", false
	}
	var lag []string
	for _, t := range sortedKeys(n.Sent) {
		if n.Acked[t] != n.Sent[t] {
			lag = append(lag, fmt.Sprintf("%s (sent %s, acked %s)", t, n.Sent[t], orDash(n.Acked[t])))
		}
	}
	if len(lag) == 0 {
		return "converged", true
	}
	return "lagging: " + strings.Join(lag, ", "), false
}

// nackLines describes a rejected response and the objects behind it.
func nackLines(n *xds.Nack, now time.Time) []string {
	lines := []string{fmt.Sprintf("    last NACK (%s ago): %s version %s: %s", age(n.At.Format(time.RFC3339), now), n.Type, n.Version, n.Message)}
	if len(n.Resources) > 0 {
		lines = append(lines, "      resources: "+strings.Join(n.Resources, ", "))
	}
	if len(n.Objects) > 0 {
		lines = append(lines, "      objects: "+strings.Join(n.Objects, ", "))
	}
	return lines
}

// objectSuffix is " (for OBJECT)" or nothing.
func objectSuffix(object string) string {
	if object == "" {
		return ""
	}
	return " (for " + object + ")"
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
