package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/model"
)

// deleteOptions are the flags of tollgate delete.
type deleteOptions struct {
	clientOptions
	Files          []string
	Namespace      string
	DryRun         bool
	IgnoreNotFound bool
}

// newDeleteCmd returns tollgate delete: remove objects through the admin
// API, named on the command line or by the files that define them.
func newDeleteCmd() *cobra.Command {
	var o deleteOptions
	cmd := &cobra.Command{
		Use:   "delete KIND NAME | -f FILE|DIR",
		Short: "Delete policy objects through a running tollgate's admin API",
		Long: "delete removes the object KIND NAME (in -n NS, default \"default\"), or every object of the YAML files\n" +
			"given with -f, from tollgate's API store; tollgate stops serving it. Objects defined by a file of the\n" +
			"server's policy directory cannot be deleted through the API: the server names the file to edit.\n" +
			"--dry-run checks the deletion like a real one, without doing it. Writes need credentials.",
		Example: "  tollgate delete httproute chat -n team-a --token-file ~/.tollgate-token\n" +
			"  tollgate delete -f policies/team-a/",
		RunE: func(cmd *cobra.Command, args []string) error { return runDelete(cmd, &o, args) },
	}
	addClientFlags(cmd, &o.clientOptions)
	f := cmd.Flags()
	f.StringArrayVarP(&o.Files, "filename", "f", nil, "file or directory whose objects to delete (repeatable; - for standard input)")
	f.StringVarP(&o.Namespace, "namespace", "n", "", `namespace of the object (or of the documents that name none; default "default")`)
	f.BoolVar(&o.DryRun, "dry-run", false, "check the deletion on the server, but delete nothing")
	f.BoolVar(&o.IgnoreNotFound, "ignore-not-found", false, "treat an object that does not exist as deleted")
	return cmd
}

// deleteTarget is one object to delete and where it was named.
type deleteTarget struct {
	Kind, Namespace, Name string
	// Where names the target in messages: file:line: ref for -f, empty
	// (the ref) for KIND NAME.
	Where string
}

// runDelete deletes every target, going on past failures.
func runDelete(cmd *cobra.Command, o *deleteOptions, args []string) error {
	targets, localFailed, err := deleteTargets(cmd, o, args)
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	kinds, err := discover(cmd.Context(), c)
	if err != nil {
		return err
	}
	failed, invalid, answers := deleteAll(cmd, c, kinds, targets, o)
	if o.Output != "text" && len(answers) > 0 {
		if err := printObjects(cmd.OutOrStdout(), o.Output, answers); err != nil {
			return err
		}
	}
	if failed+localFailed > 0 {
		if o.DryRun && invalid && len(targets) > 1 {
			fmt.Fprintln(cmd.ErrOrStderr(), "note: a dry run checks each deletion against what the server holds, not against the other deletions "+
				"of this command: deleting an object that another one refers to fails it even if that one is deleted too")
		}
		return exitError{code: 1}
	}
	return nil
}

// deleteAll deletes targets in order, printing a line per object deleted
// (for -o text) and the refusals, and returns how many failed, whether
// one was refused as invalid, and the server's answers. A 401 stops it.
func deleteAll(cmd *cobra.Command, c *apiClient, kinds *kindMap, targets []deleteTarget, o *deleteOptions) (failed int, invalid bool, answers []json.RawMessage) {
	stderr := cmd.ErrOrStderr()
	for i, t := range targets {
		r, err := kinds.lookup(t.Kind)
		if err != nil {
			failed++
			printRefusal(stderr, cmp.Or(t.Where, refString(t.Kind, t.Namespace, t.Name)), err, nil)
			continue
		}
		ref := refString(r.Kind, t.Namespace, t.Name)
		where := cmp.Or(t.Where, ref)
		var answer json.RawMessage
		err = c.do(cmd.Context(), http.MethodDelete, objectPath(r, t.Namespace, t.Name, o.DryRun), nil, &answer)
		switch {
		case err == nil:
			answers = append(answers, answer)
			if o.Output == "text" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted%s\n", ref, dryRunSuffix(o.DryRun))
			}
		case isNotFound(err) && o.IgnoreNotFound:
		case isNotFound(err):
			failed++
			fmt.Fprintf(stderr, "error: %s not found: nothing to delete (list them with tollgate get %s -A)\n", where, r.Name)
		case isUnauthorized(err):
			printRefusal(stderr, where, err, nil)
			fmt.Fprintln(stderr, unauthorizedHint)
			return failed + len(targets) - i, invalid, answers
		default:
			failed++
			printRefusal(stderr, where, err, nil)
			invalid = invalid || isInvalid(err)
		}
	}
	return failed, invalid, answers
}

// deleteTargets is what to delete: KIND NAME, or the documents of -f
// (whose local problems are printed and counted in failed).
func deleteTargets(cmd *cobra.Command, o *deleteOptions, args []string) (targets []deleteTarget, failed int, err error) {
	switch {
	case len(o.Files) > 0 && len(args) > 0:
		return nil, 0, errors.New("delete takes KIND NAME or -f FILE, not both")
	case len(o.Files) == 0 && len(args) != 2:
		return nil, 0, errors.New("delete needs KIND NAME (tollgate delete httproute chat -n team-a) or -f FILE|DIR")
	case len(args) == 2:
		ns := cmp.Or(o.Namespace, model.DefaultNamespace)
		return []deleteTarget{{Kind: args[0], Namespace: ns, Name: args[1]}}, 0, nil
	}
	docs, failed, err := loadDocuments(o.Files, cmd.InOrStdin(), o.Namespace, cmd.ErrOrStderr())
	if err != nil {
		return nil, 0, err
	}
	if len(docs) == 0 && failed == 0 {
		return nil, 0, fmt.Errorf("no objects in the -f files: nothing to delete")
	}
	// Policies and routes before what they refer to: the reverse of apply.
	sortForApply(docs)
	slices.Reverse(docs)
	for _, d := range docs {
		targets = append(targets, deleteTarget{Kind: d.Kind, Namespace: d.Namespace, Name: d.Name, Where: d.where()})
	}
	return targets, failed, nil
}
