package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
)

// buildBinaries builds tollgate and tollgate-load into one directory, as
// a user would, so that tollgate-load finds tollgate next to itself.
func buildBinaries(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	build := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/tollgate", "./cmd/tollgate-load")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	return dir
}

// runReport runs the tool with -o json and reads its report; it also
// returns the report's text, for messages. A failed run's message holds
// its standard error and, if given, the agent's log.
func runReport(t *testing.T, cmd *exec.Cmd, agentLog ...*bytes.Buffer) (report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := "stderr:\n" + stderr.String()
		for _, l := range agentLog {
			msg += "\nagent:\n" + l.String()
		}
		require.NoError(t, err, msg)
	}
	var rep report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	return rep, stdout.String()
}

// TestLoadToolMeasuresTollgateAndFloor runs the real tool on a small fleet
// with each edit method: every Envoy must see every edit, the figures must
// be ordered and tollgate's and the floor's resources the same.
func TestLoadToolMeasuresTollgateAndFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tollgate and runs fleets of 20 Envoys against it; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := buildBinaries(t, ctx)
	for _, tc := range []struct {
		edit    string
		targets string
	}{
		{editRename, "tollgate,floor"},
		{editInPlace, "tollgate"},
		{editAPI, "tollgate"},
	} {
		t.Run(tc.edit, func(t *testing.T) {
			const envoys, edits = 20, 2
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"),
				"--envoys", "20", "--gateways", "2", "--routes", "10", "--edits", "2", "--pause", "50ms",
				"--edit", tc.edit, "--target", tc.targets, "--timeout", "1m", "-o", "json")
			rep, text := runReport(t, cmd)
			require.Len(t, rep.Targets, len(strings.Split(tc.targets, ",")))
			for _, tr := range rep.Targets {
				require.Equal(t, envoys*edits, tr.Samples, tr.Target)
				require.Equal(t, envoys/2, tr.DeltaStreams, tr.Target)
				require.Len(t, tr.Edits, edits, tr.Target)
				require.Positive(t, tr.P50Ms, tr.Target)
				require.LessOrEqual(t, tr.P50Ms, tr.P99Ms, tr.Target)
				require.LessOrEqual(t, tr.P99Ms, tr.MaxMs, tr.Target)
				require.Positive(t, tr.Connected.RSSBytes, tr.Target)
				require.Positive(t, tr.Connected.Goroutines, tr.Target)
				// The edits changed the route configurations, nothing else.
				require.NotEqual(t, tr.InitialVersions[routeType], tr.FinalVersions[routeType], tr.Target)
				for typeURL, v := range tr.InitialVersions {
					if typeURL != routeType {
						require.Equal(t, v, tr.FinalVersions[typeURL], "%s: %s", tr.Target, typeURL)
					}
				}
			}
			if strings.Contains(tc.targets, targetFloor) {
				require.NotNil(t, rep.Ratio)
				require.Positive(t, rep.Ratio.P99)
				require.NotNil(t, rep.SameResources)
				require.True(t, *rep.SameResources, "tollgate and the floor served different versions:\n%s", text)
			}
		})
	}

	t.Run("one gateway of four edited", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"),
			"--envoys", "20", "--gateways", "4", "--edit-gateways", "1", "--routes", "5", "--edits", "2", "--pause", "50ms",
			"--timeout", "1m", "-o", "json")
		rep, text := runReport(t, cmd)
		require.Equal(t, 1, rep.Scenario.EditGateways)
		require.Len(t, rep.Targets, 2)
		for _, tr := range rep.Targets {
			require.Equal(t, 5*2, tr.Samples, "%s: gateway gw-000's 5 Envoys × 2 edits", tr.Target)
			require.Equal(t, map[string]float64{"RouteConfiguration": 1}, tr.ResponsesPerEnvoyPerEdit, tr.Target)
			require.Zero(t, tr.UneditedResponses, "%s: the Envoys of the gateways no edit changed got responses", tr.Target)
		}
		require.True(t, *rep.SameResources, text)
	})

	t.Run("text", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"),
			"--envoys", "4", "--routes", "5", "--edits", "1", "--pause", "0s", "--timeout", "1m").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "4 Envoys (50% on Delta ADS), 1 gateway × 5 routes, 1 edits by rename")
		require.Contains(t, string(out), "tollgate/floor")
		require.Contains(t, string(out), "same resources: yes")
	})

	t.Run("refuses bad options", func(t *testing.T) {
		for args, want := range map[string]string{
			"--edit copy":       `--edit "copy": want rename, inplace or api`,
			"--target envoy":    `--target "envoy": want tollgate or floor`,
			"--delta 2":         "--delta is a fraction",
			"--tollgate /nope":  "/nope",
			"--envoys 0":        "--envoys must be at least 1",
			"--gateways 1000":   "--gateways must be between 1 and 999",
			"--edit-gateways 2": "--edit-gateways must be between 1 and --gateways (1)",
		} {
			out, err := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"), append(strings.Fields(args), "--timeout", "5s")...).CombinedOutput()
			require.Error(t, err, args)
			require.Contains(t, string(out), want, args)
		}
	})
}

const routeType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

// TestEditOfReadsTheTranslatedRoute checks that the marker clients look
// for is where tollgate's translation puts it, for the gateways an edit
// changes, and that the others keep the initial one.
func TestEditOfReadsTheTranslatedRoute(t *testing.T) {
	dir := t.TempDir()
	o := options{gateways: 2, routes: 3, edit: editRename, editGateways: 2}
	require.NoError(t, writeScenario(dir, o))
	for _, edited := range []int{1, 2} {
		for k := range 3 {
			snaps, err := floorSnapshots(dir, 2, edited, k)
			require.NoError(t, err)
			require.Len(t, snaps, k+1)
			for step, gws := range snaps {
				require.Len(t, gws, 2)
				for key, snap := range gws {
					g := 0
					if strings.HasSuffix(key, gatewayName(1)) {
						g = 1
					}
					res := snap.GetResources(routeType)
					require.Len(t, res, 1, key)
					for _, r := range res {
						require.Equal(t, editAt(g, edited, step), editOf(r.(*routev3.RouteConfiguration)), "gateway %s, edit %d of %d gateways", key, step, edited)
					}
				}
			}
		}
	}
	// A route configuration without the edited route holds no edit.
	objs, errs := policies.NewScheme().Decode("x.yaml", []byte("apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw-000}\nspec:\n  listeners:\n  - {name: http, port: 10080, protocol: HTTP}\n"))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	for _, g := range out.Gateways {
		for _, rc := range g.Routes {
			require.Equal(t, -1, editOf(rc))
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, percentile(ds, 0.50))
	require.Equal(t, 99*time.Millisecond, percentile(ds, 0.99))
	require.Equal(t, 100*time.Millisecond, percentile(ds, 1))
	require.Equal(t, 7*time.Millisecond, percentile([]time.Duration{7 * time.Millisecond}, 0.99))
}

// TestLoadToolThroughAnAgent runs the targets under tollgate-load agent,
// as on the control plane's machine, and the Envoys in the driver: both
// targets are measured, the report names the agent's machine, and a
// wrong token or a bad agent setup is refused with what to do.
func TestLoadToolThroughAnAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tollgate and runs fleets of 20 Envoys against it; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := buildBinaries(t, ctx)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "agent.token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	addr, err := freeAddr()
	require.NoError(t, err)

	agentCmd := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"), "agent", "--listen", addr, "--token-file", tokenFile)
	var agentLog bytes.Buffer
	agentCmd.Stdout, agentCmd.Stderr = &agentLog, &agentLog
	require.NoError(t, agentCmd.Start())
	t.Cleanup(func() {
		_ = agentCmd.Process.Signal(os.Interrupt)
		_ = agentCmd.Wait()
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/v1/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "agent not up:\n%s", &agentLog)

	driver := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"), append([]string{"--agent", "http://" + addr,
			"--envoys", "20", "--gateways", "2", "--routes", "10", "--edits", "2", "--pause", "50ms", "--timeout", "1m"}, args...)...)
	}
	cmd := driver("--agent-token-file", tokenFile, "-o", "json")
	rep, text := runReport(t, cmd, &agentLog)
	require.NotNil(t, rep.TargetMachine)
	require.Positive(t, rep.TargetMachine.CPUs)
	require.Len(t, rep.Targets, 2)
	for _, tr := range rep.Targets {
		require.Equal(t, 40, tr.Samples, tr.Target)
		require.Positive(t, tr.Connected.RSSBytes, tr.Target)
		require.NotEqual(t, tr.InitialVersions[routeType], tr.FinalVersions[routeType], tr.Target)
	}
	require.NotNil(t, rep.SameResources)
	require.True(t, *rep.SameResources, "tollgate and the floor served different versions:\n%s", text)

	wrong := filepath.Join(dir, "wrong.token")
	require.NoError(t, os.WriteFile(wrong, []byte("fedcba9876543210fedcba9876543210"), 0o600))
	out, err := driver("--agent-token-file", wrong).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "401 Unauthorized: missing or wrong token")
	out, err = driver().CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--agent-token-file is required")

	short := filepath.Join(dir, "short.token")
	require.NoError(t, os.WriteFile(short, []byte("secret"), 0o600))
	for args, want := range map[string]string{
		"--listen 0.0.0.0:0 --token-file " + tokenFile: "--xds-host: give the address the Envoys reach this machine at",
		"--listen 127.0.0.1:0 --token-file " + short:   "holds 6 characters: write a secret of at least 16",
		"--listen 127.0.0.1:0":                         `required flag(s) "token-file" not set`,
	} {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "tollgate-load"), append([]string{"agent"}, strings.Fields(args)...)...).CombinedOutput()
		require.Error(t, err, args)
		require.Contains(t, string(out), want, args)
	}
}
