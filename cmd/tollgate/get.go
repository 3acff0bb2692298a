package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/model"
)

// getOptions are the flags of tollgate get.
type getOptions struct {
	clientOptions
	Namespace     string
	AllNamespaces bool
}

// newGetCmd returns tollgate get: list objects, or show one, with where
// they come from and whether they are accepted and programmed.
func newGetCmd() *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List policy objects of a running tollgate, or show one",
		Long: "get lists the objects of KIND (Gateway, gateways or gateway; \"all\" for every kind) in a namespace,\n" +
			"or in all of them with -A, with their source (api, or the file and line that defines them), generation,\n" +
			"and whether they are Accepted and Programmed; `tollgate status` says why not. With NAME it shows one\n" +
			"object; -o yaml or -o json print it whole, as the API has it. Reads need no credentials.",
		Example: "  tollgate get httproutes -n team-a\n" +
			"  tollgate get all -A\n" +
			"  tollgate get httproute chat -n team-a -o yaml",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return runGet(cmd, &o, args) },
	}
	addClientFlags(cmd, &o.clientOptions)
	f := cmd.Flags()
	f.StringVarP(&o.Namespace, "namespace", "n", "", `namespace to list or read (default "default")`)
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list the objects of every namespace")
	return cmd
}

// runGet lists or reads objects and prints them.
func runGet(cmd *cobra.Command, o *getOptions, args []string) error {
	if o.AllNamespaces && (o.Namespace != "" || len(args) == 2) {
		return errors.New("-A lists every namespace: to read one object, name its namespace with -n instead")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	kinds, err := discover(ctx, c)
	if err != nil {
		return err
	}
	ns := cmp.Or(o.Namespace, model.DefaultNamespace)
	if o.AllNamespaces {
		ns = ""
	}
	resources := kinds.resources
	if args[0] != "all" {
		r, err := kinds.lookup(args[0])
		if err != nil {
			return err
		}
		resources = []apiResource{r}
	} else if len(args) == 2 {
		return errors.New("get all lists objects: to read one, name its kind (tollgate get httproute NAME)")
	}
	if len(args) == 2 {
		return getOne(ctx, c, cmd.OutOrStdout(), o.Output, resources[0], ns, args[1])
	}
	return getList(ctx, c, cmd, o.Output, resources, ns, args[0] == "all")
}

// getOne reads one object and prints it.
func getOne(ctx context.Context, c *apiClient, w io.Writer, format string, r apiResource, ns, name string) error {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, objectPath(r, ns, name, false), nil, &raw); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s not found: list them with tollgate get %s -A", refString(r.Kind, ns, name), r.Name)
		}
		return err
	}
	if format != "text" {
		return printStructured(w, format, raw)
	}
	var obj apiObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	return printObjectTable(w, []apiObject{obj}, false, time.Now())
}

// objectList is the answer of a list request.
type objectList struct {
	Items []json.RawMessage `json:"items"`
}

// getList lists the objects of resources in ns (every namespace when ns
// is empty) and prints them; withKind names each object's kind, for get
// all.
func getList(ctx context.Context, c *apiClient, cmd *cobra.Command, format string, resources []apiResource, ns string, withKind bool) error {
	var raws []json.RawMessage
	var objs []apiObject
	for _, r := range resources {
		var raw json.RawMessage
		if err := c.do(ctx, http.MethodGet, listPath(r, ns), nil, &raw); err != nil {
			return err
		}
		if format != "text" && !withKind {
			return printStructured(cmd.OutOrStdout(), format, raw)
		}
		var l objectList
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("unexpected answer listing %s: %w", r.Name, err)
		}
		for _, item := range l.Items {
			var obj apiObject
			if err := json.Unmarshal(item, &obj); err != nil {
				return fmt.Errorf("unexpected answer listing %s: %w", r.Name, err)
			}
			raws, objs = append(raws, item), append(objs, obj)
		}
	}
	if format != "text" {
		return printStructured(cmd.OutOrStdout(), format, listOf(raws))
	}
	if len(objs) == 0 {
		where := "in namespace " + ns
		if ns == "" {
			where = "in any namespace"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "No objects found %s.\n", where)
		return nil
	}
	return printObjectTable(cmd.OutOrStdout(), objs, withKind, time.Now())
}

// printObjectTable prints objects as a table: NAMESPACE NAME SOURCE
// GENERATION ACCEPTED PROGRAMMED AGE. withKind writes names as Kind/name.
func printObjectTable(w io.Writer, objs []apiObject, withKind bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tSOURCE\tGENERATION\tACCEPTED\tPROGRAMMED\tAGE")
	for _, o := range objs {
		name := o.Metadata.Name
		if withKind {
			name = o.Kind + "/" + name
		}
		gen := "-"
		if o.Metadata.Generation > 0 {
			gen = strconv.FormatInt(o.Metadata.Generation, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cmp.Or(o.Metadata.Namespace, model.DefaultNamespace), name, sourceText(o.Status.Source), gen,
			condition(o.Status.Conditions, "Accepted"), condition(o.Status.Conditions, "Programmed"), age(o.Metadata.CreationTimestamp, now))
	}
	return tw.Flush()
}
