package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// explainOptions are the flags of tollgate explain route.
type explainOptions struct {
	clientOptions
	Namespace string
}

// newExplainCmd returns tollgate explain: the effective settings of an
// object, merged over every scope, each with the object and field that
// set it.
func newExplainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Show the effective settings of a route and which policy field set each",
		Long: "explain shows what a running tollgate makes of an object once every policy is merged:\n" +
			"each effective setting, the scope it applies at, and the object, field and line that set it\n" +
			"(\"default\" for tollgate's built-in defaults), plus what a more specific scope overrode.",
	}
	cmd.AddCommand(newExplainRouteCmd())
	return cmd
}

func newExplainRouteCmd() *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:     "route [NAMESPACE/]NAME",
		Aliases: []string{"routes", "httproute", "httproutes"},
		Short:   "Show an HTTPRoute's effective settings and where each comes from",
		Long: "explain route shows one HTTPRoute as the gateways serve it: its listeners and hostnames, its\n" +
			"rules with their matches and backends (weights, fail-over order), and every effective setting\n" +
			"(retries, timeouts, guard rails, rate limits, credentials, TLS, egress limits, QoS, DNS, region)\n" +
			"with the object and field that set it. Secrets are never shown, only where they are read from.",
		Example: "  tollgate explain route default/chat\n" +
			"  tollgate explain route chat -n team-a -o yaml",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runExplainRoute(cmd, &o, args[0]) },
	}
	addClientFlags(cmd, &o.clientOptions)
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", `namespace of the route when NAME has none (default "default")`)
	return cmd
}

// explainRouteRef reads NAMESPACE/NAME or NAME (with -n).
func explainRouteRef(arg, namespace string) (model.Ref, error) {
	ns, name, qualified := strings.Cut(arg, "/")
	if !qualified {
		ns, name = namespace, arg
	} else if namespace != "" && namespace != ns {
		return model.Ref{}, fmt.Errorf("%q names namespace %s, and -n says %s: give one", arg, ns, namespace)
	}
	if ns == "" {
		ns = model.DefaultNamespace
	}
	if name == "" || strings.Contains(name, "/") {
		return model.Ref{}, fmt.Errorf("%q: name the route as NAMESPACE/NAME or NAME", arg)
	}
	return model.Ref{Kind: model.KindHTTPRoute, Namespace: ns, Name: name}, nil
}

func explainRoutePath(ref model.Ref) string {
	return "/explain/routes/" + url.PathEscape(ref.Namespace) + "/" + url.PathEscape(ref.Name)
}

func runExplainRoute(cmd *cobra.Command, o *explainOptions, arg string) error {
	ref, err := explainRouteRef(arg, o.Namespace)
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(cmd.Context(), http.MethodGet, explainRoutePath(ref), nil, &raw); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound && ae.Reason == "NotFound" {
			return errors.New(ae.Message)
		}
		return err
	}
	w := cmd.OutOrStdout()
	switch o.Output {
	case "json":
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := w.Write(b.Bytes())
		return err
	case "yaml":
		out, err := yaml.JSONToYAML(raw)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	var e model.RouteExplanation
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", explainRoutePath(ref), err)
	}
	return printExplanation(w, &e)
}

// printExplanation writes the explanation for people: a header, the
// rules, then a table of the settings and of what was overridden.
func printExplanation(w io.Writer, e *model.RouteExplanation) error {
	// Files next to the route's are named relative to its directory; an
	// API object's File is its API path.
	base := ""
	if e.File != "" && !strings.HasPrefix(e.File, "/apis/") {
		base = filepath.Dir(e.File) + string(filepath.Separator)
	}
	at := func(file string, line int) string {
		if file == "" {
			return ""
		}
		file = strings.TrimPrefix(file, base)
		if line > 0 {
			return fmt.Sprintf("%s:%d", file, line)
		}
		return file
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Route:      %s", e.Route)
	if e.File != "" {
		fmt.Fprintf(&b, " (%s:%d)", e.File, e.Line)
	} else {
		b.WriteString(" (api)")
	}
	b.WriteString("\n")
	for i, p := range e.Parents {
		label := "Listeners:  "
		if i > 0 {
			label = "            "
		}
		fmt.Fprintf(&b, "%s%s listener %s (port %d, %s)", label, p.Gateway, p.Listener, p.Port, p.Protocol)
		if p.Parent != "" {
			fmt.Fprintf(&b, ", Parent mode: forwards to %s", p.Parent)
		}
		b.WriteString("\n")
	}
	hosts := "any"
	if len(e.Hostnames) > 0 {
		hosts = strings.Join(e.Hostnames, ", ")
	}
	fmt.Fprintf(&b, "Hostnames:  %s\n", hosts)
	for _, r := range e.Rules {
		name := fmt.Sprintf("rule[%d]", r.Index)
		if r.Name != "" {
			name += " " + r.Name
		}
		matches := "every request"
		if len(r.Matches) > 0 {
			matches = strings.Join(r.Matches, "; or ")
		}
		fmt.Fprintf(&b, "\n%s (%s): %s\n", name, at(e.File, r.Line), matches)
		for _, be := range r.Backends {
			fmt.Fprintf(&b, "  -> %s  weight %d, priority %d (%s), %s, %s", be.Backend, be.Weight, be.Priority, be.Role, be.Address, be.Schema)
			if be.Translated != "" {
				fmt.Fprintf(&b, " (translated %s)", be.Translated)
			}
			b.WriteString("\n")
			if be.Unavailable != "" {
				fmt.Fprintf(&b, "     unavailable: %s\n", be.Unavailable)
			}
			for _, rf := range be.Refused {
				fmt.Fprintf(&b, "     refused: %s\n", rf)
			}
		}
	}
	if _, err := io.WriteString(w, b.String()+"\n"); err != nil {
		return err
	}
	if err := explainTable(w, e.Settings, false, at); err != nil {
		return err
	}
	if len(e.Overridden) > 0 {
		if _, err := io.WriteString(w, "\nOverridden (set, but not in effect):\n"); err != nil {
			return err
		}
		if err := explainTable(w, e.Overridden, true, at); err != nil {
			return err
		}
	}
	if len(e.Conditions) > 0 {
		var c strings.Builder
		c.WriteString("\nConditions:\n")
		for _, cd := range e.Conditions {
			fmt.Fprintf(&c, "  %s %s=%t (%s): %s\n", cd.Object, cd.Type, cd.Status, cd.Reason, cd.Message)
		}
		if _, err := io.WriteString(w, c.String()); err != nil {
			return err
		}
	}
	return nil
}

func explainTable(w io.Writer, settings []model.ExplainedSetting, overridden bool, at func(string, int) string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "SCOPE\tSETTING\tVALUE\tFROM\tFIELD"
	if overridden {
		header += "\tOVERRIDDEN BY"
	}
	fmt.Fprintln(tw, header)
	for _, s := range settings {
		field := s.Field
		if where := at(s.File, s.Line); where != "" {
			field = strings.TrimSpace(field + " (" + where + ")")
		}
		if s.Note != "" && s.From == model.FromDefault && field == "" {
			field = "(" + s.Note + ")"
		}
		row := []string{s.Scope, s.Setting, explainValue(s.Value), s.From, field}
		if overridden {
			row = append(row, s.OverriddenBy)
		}
		for i, c := range row {
			row[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// explainValue renders a setting's value on one line: lists joined with
// commas, strings as they are, anything else as JSON.
func explainValue(v any) string {
	if v == nil {
		return "-"
	}
	if s, ok := v.(string); ok {
		return s
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = explainValue(rv.Index(i).Interface())
		}
		return strings.Join(parts, ", ")
	}
	out, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(out)
}

// explainHandler serves GET /explain/routes/{ns}/{name}.
func explainHandler(st *store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := st.Config()
		if cfg == nil {
			explainStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "tollgate has no valid configuration to explain yet")
			return
		}
		ref := model.Ref{Kind: model.KindHTTPRoute, Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
		if ref.Namespace == "" || ref.Name == "" {
			explainStatus(w, http.StatusBadRequest, "BadRequest", "name the route as /explain/routes/{namespace}/{name}")
			return
		}
		e, err := model.ExplainRoute(cfg, ref)
		switch {
		case errors.Is(err, model.ErrRouteNotFound):
			explainStatus(w, http.StatusNotFound, "NotFound", err.Error())
			return
		case err != nil:
			explainStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		xds.WriteJSON(w, e)
	})
}

// explainStatus writes an API Status refusal.
func explainStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	out, _ := json.MarshalIndent(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"code": code, "reason": reason, "message": msg,
	}, "", "  ")
	_, _ = w.Write(append(out, '\n'))
}
