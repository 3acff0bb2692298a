package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// scrape reads tollgate's /metrics.
func scrape(t *testing.T, inst *instance) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + inst.AdminAddr.String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// value is the value of the series of family name with exactly labels
// (counter, gauge, or a histogram's count), and whether it exists.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// waitMetric polls /metrics until the series reaches at least min.
func waitMetric(t *testing.T, inst *instance, name string, labels map[string]string, min float64) {
	t.Helper()
	var last map[string]*dto.MetricFamily
	ok := false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		last = scrape(t, inst)
		if v, found := value(last, name, labels); found && v >= min {
			ok = true
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
	if !ok {
		var dump strings.Builder
		for _, f := range last {
			if strings.HasPrefix(f.GetName(), "tollgate_") {
				_, _ = expfmt.MetricFamilyToText(&dump, f)
			}
		}
		t.Fatalf("%s%v did not reach %v:\n%s", name, labels, min, dump.String())
	}
}

func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, _ := startTollgate(t, dir)

	sotw := connect(t, inst, "vm-1", "egress", false, nil)
	delta := connect(t, inst, "vm-2", "egress", true, nil)
	// An Envoy of the other gateway that refuses the anthropic cluster.
	reject := func(_ string, m proto.Message) error {
		if c, ok := m.(*clusterv3.Cluster); ok && strings.Contains(c.GetName(), "anthropic") {
			return fmt.Errorf("cluster %s: unsupported by this Envoy", c.GetName())
		}
		return nil
	}
	nacker := connect(t, inst, "vm-3", "other", false, reject)
	want := complete("backend/default/openai", "backend/default/vllm")
	for _, c := range []*envoysim.Client{sotw, delta} {
		_, err := c.WaitFor(waitCtx(t), want)
		require.NoError(t, err)
	}
	_, err := nacker.WaitForResponse(waitCtx(t), func(r envoysim.Response) bool { return r.Err != "" })
	require.NoError(t, err)

	waitMetric(t, inst, "tollgate_connected_nodes", map[string]string{"gateway": "egress", "stream": "sotw"}, 1)
	waitMetric(t, inst, "tollgate_connected_nodes", map[string]string{"gateway": "egress", "stream": "delta"}, 1)
	waitMetric(t, inst, "tollgate_connected_nodes", map[string]string{"gateway": "other", "stream": "sotw"}, 1)
	for _, stream := range []string{"sotw", "delta"} {
		for _, typ := range []string{"clusters", "endpoints", "listeners", "routes"} {
			labels := map[string]string{"gateway": "egress", "type": typ, "stream": stream}
			waitMetric(t, inst, "tollgate_xds_pushes_total", labels, 1)
			waitMetric(t, inst, "tollgate_xds_acks_total", labels, 1)
		}
	}
	waitMetric(t, inst, "tollgate_xds_nacks_total", map[string]string{"gateway": "other", "type": "clusters", "stream": "sotw"}, 1)
	families := scrape(t, inst)
	v, _ := value(families, "tollgate_connected_nodes", map[string]string{"gateway": "egress", "stream": "sotw"})
	require.Equal(t, 1.0, v)
	_, found := value(families, "tollgate_xds_nacks_total", map[string]string{"gateway": "egress", "type": "clusters", "stream": "sotw"})
	require.False(t, found, "a NACK of gateway other was counted for egress")
	require.Contains(t, families, "go_goroutines", "the Go collector is registered")
	require.Contains(t, families, "process_start_time_seconds", "the process collector is registered")
	waitMetric(t, inst, "tollgate_reload_duration_seconds", map[string]string{"result": "applied"}, 1)
	waitMetric(t, inst, "tollgate_translation_duration_seconds", nil, 1)
	waitMetric(t, inst, "tollgate_validation_duration_seconds", nil, 1)

	// A change of both gateways: egress converges once both of its
	// Envoys ACKed; the other gateway's Envoy already rejected clusters
	// the change keeps, so its wait ends as incomplete.
	routes := strings.Replace(policyRoutes("120s"), "  - backendRefs: [{name: anthropic}]\n", "  - backendRefs: [{name: anthropic}]\n    timeouts: {request: 30s}\n", 1)
	writePolicies(t, dir, map[string]string{"routes.yaml": routes})
	for _, c := range []*envoysim.Client{sotw, delta} {
		_, err := c.WaitFor(waitCtx(t), func(s envoysim.State) bool { return routeTimeout(s) == 120*time.Second })
		require.NoError(t, err)
	}
	waitMetric(t, inst, "tollgate_convergence_seconds", map[string]string{"gateway": "egress"}, 1)
	waitMetric(t, inst, "tollgate_convergence_incomplete_total", map[string]string{"gateway": "other", "reason": "nack"}, 1)
	_, found = value(scrape(t, inst), "tollgate_convergence_seconds", map[string]string{"gateway": "other"})
	require.False(t, found, "gateway other never converged")

	// An invalid edit is refused and counted.
	writePolicies(t, dir, map[string]string{"routes.yaml": routes + "---\napiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: broken}\nspec: {parentRefs: [{name: nowhere}], rules: [{backendRefs: [{name: missing}]}]}\n"})
	waitMetric(t, inst, "tollgate_refused_changes_total", map[string]string{"reason": "invalid_policy"}, 1)
	waitMetric(t, inst, "tollgate_reload_duration_seconds", map[string]string{"result": "refused"}, 1)
}
