package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// newTokenCmd makes API bearer tokens: the token for the writer, and the
// hashed entry for the --api-tokens file.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Make bearer tokens for the admin API's writers"}
	var name string
	var namespaces []string
	newCmd := &cobra.Command{
		Use:   "new --name NAME --namespace NS [--namespace NS2 | --namespace '*']",
		Short: "Print a new random token (stdout) and its --api-tokens entry (stderr)",
		Long: "token new prints a random bearer token on stdout, for the writer (tollgate apply --token-file),\n" +
			"and on stderr the entry to add to the file given to tollgate serve --api-tokens. The file keeps only\n" +
			"the token's SHA-256, so reading it grants nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || len(namespaces) == 0 {
				return errors.New("--name and at least one --namespace are required ('*' is every namespace)")
			}
			var b [32]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			tok := "tg_" + base64.RawURLEncoding.EncodeToString(b[:])
			sum := sha256.Sum256([]byte(tok))
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			quoted := make([]string, len(namespaces))
			for i, ns := range namespaces {
				quoted[i] = fmt.Sprintf("%q", ns)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "# add to the --api-tokens file, under tokens:\n- name: %s\n  sha256: %s\n  namespaces: [%s]\n",
				name, hex.EncodeToString(sum[:]), strings.Join(quoted, ", "))
			return nil
		},
	}
	newCmd.Flags().StringVar(&name, "name", "", "writer's name, as the audit log shows it")
	newCmd.Flags().StringSliceVar(&namespaces, "namespace", nil, "namespace the token may write (repeat; '*' for all)")
	cmd.AddCommand(newCmd)
	return cmd
}
