package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds"
)

// floorReady is the line the floor prints once it serves.
const floorReady = "ready"

func newFloorCommand() *cobra.Command {
	var (
		dir, xdsAddr, metricsAddr string
		gateways, edited, edits   int
	)
	cmd := &cobra.Command{
		Use:   "floor",
		Short: "serve the scenario from a bare go-control-plane server (started by tollgate-load itself)",
		Long: `floor is the baseline tollgate-load compares tollgate with: go-control-plane's
snapshot cache and ADS server, with the gRPC options tollgate's xDS server
uses and nothing else of tollgate's (no callbacks, no validation, no file
watch). It translates the policies of --policies with tollgate's translator
at start, for the initial state and every edit, so that an edit costs it
only the snapshot swap and the delivery. It reads edit numbers, one per
line, on its standard input, and ends at the end of that input.`,
		Hidden:        true,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveFloor(cmd.Context(), dir, gateways, edited, edits, xdsAddr, metricsAddr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "policies", "", "the scenario's policy directory")
	f.IntVar(&gateways, "gateways", 1, "gateways in the scenario")
	f.IntVar(&edits, "edits", 1, "edits to prepare")
	f.IntVar(&edited, "edit-gateways", 1, "gateways each edit changes, the first ones")
	f.StringVar(&xdsAddr, "xds-addr", "127.0.0.1:0", "xDS address")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:0", "address of /metrics")
	return cmd
}

// clusterHash keys snapshots by the node's cluster, the gateway's key for
// the scenario's gateways (default namespace), as tollgate does.
type clusterHash struct{}

func (clusterHash) ID(node *corev3.Node) string { return node.GetCluster() }

func serveFloor(ctx context.Context, dir string, gateways, edited, edits int, xdsAddr, metricsAddr string) error {
	steps, err := floorSnapshots(dir, gateways, edited, edits)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cache := cachev3.NewSnapshotCache(true, clusterHash{}, nil)
	// Only the snapshots an edit changes are set, as tollgate sets them.
	var current map[string]*cachev3.Snapshot
	set := func(k int) error {
		for key, snap := range steps[k] {
			if prev, ok := current[key]; ok && sameSnapshotVersions(prev, snap) {
				continue
			}
			if err := cache.SetSnapshot(ctx, key, snap); err != nil {
				return err
			}
		}
		current = steps[k]
		return nil
	}
	if err := set(0); err != nil {
		return err
	}
	// The same ADS server tollgate uses, with its ordering option, so that
	// the difference measured is tollgate's own work.
	srv := serverv3.NewServer(ctx, cache, nil, sotw.WithOrderedADS())
	g := grpc.NewServer(xds.GRPCServerOptions()...)
	discovery.RegisterAggregatedDiscoveryServiceServer(g, srv)
	xl, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		return err
	}
	ml, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return err
	}
	// The default registry carries the Go and process collectors, the
	// same series tollgate's /metrics has.
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.Serve(xl) }()
	go func() { _ = hs.Serve(ml) }()
	defer hs.Close()
	defer g.Stop()
	fmt.Println(floorReady)

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			k, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || k < 0 || k >= len(steps) {
				return fmt.Errorf("floor: edit %q: want a number from 0 to %d", line, len(steps)-1)
			}
			if err := set(k); err != nil {
				return err
			}
		}
	}
}

// floorSnapshots translates the scenario for the initial state and every
// edit, as tollgate serve would (same decoder, settings and translator),
// into one snapshot per gateway.
func floorSnapshots(dir string, gateways, edited, edits int) ([]map[string]*cachev3.Snapshot, error) {
	scheme := policies.NewScheme()
	var base []model.Object
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || name == editFile || filepath.Ext(name) != ".yaml" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		objs, errs := scheme.Decode(filepath.Join(dir, name), data)
		if len(errs) > 0 {
			return nil, fmt.Errorf("floor: %v", errs)
		}
		base = append(base, objs...)
	}
	steps := make([]map[string]*cachev3.Snapshot, edits+1)
	for k := range steps {
		objs, errs := scheme.Decode(filepath.Join(dir, editFile), editYAML(gateways, edited, k))
		if len(errs) > 0 {
			return nil, fmt.Errorf("floor: %v", errs)
		}
		cfg, errs := model.BuildConfig(append(base[:len(base):len(base)], objs...), model.Settings{SystemCABundle: model.DefaultSystemCABundle})
		if len(errs) > 0 {
			return nil, fmt.Errorf("floor: %v", errs)
		}
		out, err := translate.Translate(cfg)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		steps[k] = map[string]*cachev3.Snapshot{}
		for _, g := range out.Gateways {
			snap, err := xds.Snapshot(g)
			if err != nil {
				return nil, err
			}
			steps[k][g.Key] = snap
		}
		if len(steps[k]) == 0 {
			return nil, errors.New("floor: the policies hold no gateway")
		}
	}
	return steps, nil
}

// sameSnapshotVersions reports whether two snapshots hold the same version
// of every type (versions are content hashes).
func sameSnapshotVersions(a, b *cachev3.Snapshot) bool {
	for i := range a.Resources {
		if a.Resources[i].Version != b.Resources[i].Version {
			return false
		}
	}
	return true
}
