package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate DIR",
		Short: "Check a policy directory the way serve would, without serving it",
		Long: "validate decodes, resolves and translates every policy under DIR and checks the result\n" +
			"against Envoy's constraints. It prints every violation and exits 1, or prints a summary and exits 0,\n" +
			"with a note for each policy outcome that is not a violation. DIR must be a directory holding at least\n" +
			"one object; files that are not regular files (FIFOs, devices) are skipped with a warning. It resolves no names: backends whose\n" +
			"DNSPolicy asks for reverse-DNS verification are noted as not verified (serve verifies them).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := store.NewFileSource(args[0], policies.NewScheme(), nil)
			var cfg *model.Config
			st, err := store.New(store.Options{Accept: func(c *model.Config) error {
				out, err := translate.Translate(c)
				if err != nil {
					return err
				}
				if err := out.Validate(); err != nil {
					return translate.Locate(c, err)
				}
				cfg = c
				return nil
			}})
			if err != nil {
				return err
			}
			err = src.Start(st)
			for _, w := range src.Warnings() {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
			}
			if err != nil {
				if vs, ok := model.AsViolations(err); ok {
					for _, v := range vs {
						fmt.Fprintln(cmd.ErrOrStderr(), v.Error())
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%d violation(s) in %s\n", len(vs), args[0])
					return exitError{code: 1}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %s\n", args[0], summary(cfg))
			// Outcomes that are not violations: a policy that lost a
			// conflict, a backend whose reverse DNS validate does not
			// check (it resolves no names).
			for _, c := range cfg.Conditions {
				if !c.Status {
					fmt.Fprintf(cmd.OutOrStdout(), "note: %s: %s=False %s: %s\n", c.Object, c.Type, c.Reason, c.Message)
				}
			}
			return nil
		},
	}
}

func summary(cfg *model.Config) string {
	counts := map[string]int{}
	for _, o := range cfg.Objects {
		counts[o.GetTypeMeta().Kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	if len(parts) == 0 {
		return "no objects"
	}
	return fmt.Sprintf("%d objects (%s), %d gateway(s)", len(cfg.Objects), strings.Join(parts, ", "), len(cfg.Gateways))
}
