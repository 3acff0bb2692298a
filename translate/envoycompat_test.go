package translate_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// compatVersions are the supported Envoy releases, each with a modfile in
// envoycompat/ (translate.OldestEnvoy … translate.NewestEnvoy).
var compatVersions = []translate.Version{{1, 37}, {1, 38}, {1, 39}, {1, 40}}

// TestEnvoyAPICompat decodes every golden case's and every example's
// output with the Envoy API of each supported release (see
// envoycompat/main.go for how). A gateway whose Requirements are all at or
// below a release must decode cleanly with it; one with a newer
// requirement must be rejected by it, for exactly the fields its
// requirements name. Building the four checkers takes a few seconds with a
// warm build cache and minutes with a cold one, hence -short skips it.
func TestEnvoyAPICompat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a checker per Envoy release; skipped with -short")
	}
	require.Equal(t, translate.OldestEnvoy, compatVersions[0])
	require.Equal(t, translate.NewestEnvoy, compatVersions[len(compatVersions)-1])
	checkers := buildCheckers(t)

	t.Run("not-vacuous", func(t *testing.T) { testCheckerRejects(t, checkers) })

	gateways := compatGateways(t)
	var input bytes.Buffer
	for _, g := range gateways {
		for _, m := range g.res.All() {
			input.Write(compatLine(t, g.id, m))
		}
	}
	for _, v := range compatVersions {
		t.Run("envoy-"+v.String(), func(t *testing.T) {
			problems, sum := runChecker(t, checkers[v], input.Bytes())
			require.Equal(t, bytes.Count(input.Bytes(), []byte("\n")), sum.Resources)
			require.NotZero(t, sum.Anys, "no Any was looked into")
			byGateway := map[string][]compatProblem{}
			for _, p := range problems {
				byGateway[p.Gateway] = append(byGateway[p.Gateway], p)
			}
			for _, g := range gateways {
				// What this release lacks: the fields of the gateway's
				// newer requirements.
				lacks := map[string]translate.Requirement{}
				for _, r := range g.res.Requirements {
					if v.Less(r.MinVersion) {
						lacks[r.Field] = r
					}
				}
				found := map[string]bool{}
				for _, p := range byGateway[g.id] {
					field := p.field()
					found[field] = true
					if _, ok := lacks[field]; !ok {
						hint := "declare a translate.Requirement where the field is set, and emit it only where a policy asks for it"
						if v == translate.NewestEnvoy {
							hint = "tollgate compiles against this API, so the checker is stale: run go generate ./translate/envoycompat and commit the result"
						}
						t.Errorf("Envoy %s would not understand %s, and no requirement of the gateway declares it (%s): %s", v, field, hint, p)
					}
				}
				for field, r := range lacks {
					if !found[field] {
						t.Errorf("%s: requirement %q (Envoy %s) is not needed by Envoy %s: the checker found nothing at %s; is the requirement's field or version wrong?", g.id, r.Feature, r.MinVersion, v, field)
					}
				}
			}
			if len(problems) > 0 {
				var b strings.Builder
				for _, p := range problems {
					fmt.Fprintf(&b, "\n  %s", p)
				}
				t.Logf("Envoy %s rejects %d field(s), all declared as requirements:%s", v, len(problems), b.String())
			}
		})
	}
}

// testCheckerRejects feeds the checkers fields of known age: Envoy 1.37's
// must reject a 1.40 field and a 1.39 field inside an Any, and every
// checker must reject an Any of a type no release has.
func testCheckerRejects(t *testing.T, checkers map[translate.Version]string) {
	dns, err := anypb.New(&dnsclusterv3.DnsCluster{DnsMinRefreshRate: durationpb.New(time.Second)})
	require.NoError(t, err)
	c := &clusterv3.Cluster{
		Name: "probe",
		HealthChecks: []*corev3.HealthCheck{{HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{
			HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: "/", UseAlpnProtocol: true}, // 1.40
		}}},
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name: "envoy.cluster.dns", TypedConfig: dns, // dns_min_refresh_rate: 1.39
		}},
	}
	bogus := &clusterv3.Cluster{Name: "bogus", ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
		Name: "x", TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/tollgate.NoSuchType"},
	}}}
	in := append(compatLine(t, "probe", c), compatLine(t, "bogus", bogus)...)
	fields := func(v translate.Version) []string {
		problems, sum := runChecker(t, checkers[v], in)
		require.Equal(t, 2, sum.Resources)
		var out []string
		for _, p := range problems {
			out = append(out, p.Name+": "+p.field()+" at "+p.Path)
		}
		return out
	}
	require.Equal(t, []string{
		"bogus: tollgate.NoSuchType at cluster_type.typed_config",
		"probe: envoy.config.core.v3.HealthCheck.HttpHealthCheck.use_alpn_protocol at health_checks[0].http_health_check.#15",
		"probe: envoy.extensions.clusters.dns.v3.DnsCluster.dns_min_refresh_rate at cluster_type.typed_config<envoy.extensions.clusters.dns.v3.DnsCluster>.#10",
	}, fields(translate.Version{1, 37}))
	require.Equal(t, []string{
		"bogus: tollgate.NoSuchType at cluster_type.typed_config",
		"probe: envoy.config.core.v3.HealthCheck.HttpHealthCheck.use_alpn_protocol at health_checks[0].http_health_check.#15",
	}, fields(translate.Version{1, 39}))
	require.Equal(t, []string{"bogus: tollgate.NoSuchType at cluster_type.typed_config"}, fields(translate.Version{1, 40}))
}

// buildCheckers builds envoycompat once per release. Only from the module
// cache, with checksums verified: .ci/run downloads the modules first.
func buildCheckers(t *testing.T) map[translate.Version]string {
	goTool, err := exec.LookPath("go")
	require.NoError(t, err)
	dir := t.TempDir()
	out := map[translate.Version]string{}
	for _, v := range compatVersions {
		bin := filepath.Join(dir, "envoycompat-v"+v.String())
		start := time.Now()
		cmd := exec.Command(goTool, "build", "-modfile=v"+v.String()+".mod", "-tags", fmt.Sprintf("envoy%d_%d", v.Major, v.Minor), "-o", bin, ".")
		cmd.Dir = "envoycompat"
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false", "GOWORK=off", "GOPROXY=off", "GOTOOLCHAIN=local")
		msg, err := cmd.CombinedOutput()
		require.NoError(t, err, "building the Envoy %s API checker:\n%s\n"+
			"its modules must be in the module cache: (cd translate/envoycompat && for m in v*.mod; do go mod download -modfile=$m; done), as .ci/run does", v, msg)
		t.Logf("built the Envoy %s checker in %s", v, time.Since(start).Round(10*time.Millisecond))
		out[v] = bin
	}
	return out
}

type compatGateway struct {
	id  string // golden/<case>/<gateway> or example/<dir>/<gateway>
	res *translate.GatewayResources
}

// compatGateways translates every golden input that is valid and every
// example, the way validate loads them.
func compatGateways(t *testing.T) []compatGateway {
	var out []compatGateway
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	for _, in := range inputs {
		cfg, errs := loadCase(t, in)
		if len(errs) > 0 {
			continue
		}
		out = append(out, gatewaysOf(t, "golden/"+strings.TrimSuffix(filepath.Base(in), ".yaml"), cfg)...)
	}
	examples, err := translatetest.ExampleDirs("../examples")
	require.NoError(t, err)
	for _, dir := range examples {
		var cfg *model.Config
		st, err := store.New(store.Options{Accept: func(c *model.Config) error { cfg = c; return nil }})
		require.NoError(t, err)
		require.NoError(t, store.NewFileSource(dir, policies.NewScheme(), nil).Sync(st), dir)
		out = append(out, gatewaysOf(t, "example/"+filepath.Base(dir), cfg)...)
	}
	require.NotEmpty(t, out)
	return out
}

func gatewaysOf(t *testing.T, source string, cfg *model.Config) []compatGateway {
	o, err := translate.Translate(cfg)
	require.NoError(t, err, source)
	var out []compatGateway
	for _, g := range o.Gateways {
		out = append(out, compatGateway{id: source + "/" + g.Key, res: g})
	}
	return out
}

// compatLine is one checker input line.
func compatLine(t *testing.T, gateway string, m proto.Message) []byte {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	name := ""
	switch r := m.(type) {
	case interface{ GetName() string }:
		name = r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		name = r.GetClusterName()
	}
	line, err := json.Marshal(map[string]string{
		"gateway":      gateway,
		"type_url":     "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()),
		"name":         name,
		"proto_base64": base64.StdEncoding.EncodeToString(data),
	})
	require.NoError(t, err)
	return append(line, '\n')
}

// compatProblem is a problem line of the checker (envoycompat.Problem).
type compatProblem struct {
	Gateway     string `json:"gateway"`
	Name        string `json:"name"`
	TypeURL     string `json:"type_url"`
	Path        string `json:"path"`
	Message     string `json:"message"`
	FieldNumber int32  `json:"field_number"`
	Problem     string `json:"problem"`
}

// field names what the release lacks with the newer API this module
// compiles against: the full name of an unknown field, or of the message
// of an unknown Any type.
func (p compatProblem) field() string {
	if p.Message == "google.protobuf.Any" {
		if i := strings.LastIndex(p.Problem, "type "); i >= 0 {
			url := strings.Fields(p.Problem[i+len("type "):])[0]
			return url[strings.LastIndex(url, "/")+1:]
		}
	}
	if p.FieldNumber != 0 {
		if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(p.Message)); err == nil {
			if md, ok := d.(protoreflect.MessageDescriptor); ok {
				if fd := md.Fields().ByNumber(protoreflect.FieldNumber(p.FieldNumber)); fd != nil {
					return string(fd.FullName())
				}
			}
		}
		return fmt.Sprintf("%s.#%d", p.Message, p.FieldNumber)
	}
	return p.Message
}

func (p compatProblem) String() string {
	return fmt.Sprintf("%s: %s %s: %s: %s (%s)", p.Gateway, shortURL(p.TypeURL), p.Name, p.Path, p.field(), p.Problem)
}

func shortURL(u string) string { return u[strings.LastIndex(u, ".")+1:] }

type compatSummary struct {
	Version   string `json:"version"`
	Resources int    `json:"resources"`
	Anys      int    `json:"anys"`
	Problems  int    `json:"problems"`
}

func runChecker(t *testing.T, bin string, in []byte) ([]compatProblem, compatSummary) {
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var problems []compatProblem
	var sum compatSummary
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var probe struct {
			Version string `json:"version"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &probe), sc.Text())
		if probe.Version != "" {
			require.NoError(t, json.Unmarshal(sc.Bytes(), &sum))
			continue
		}
		var p compatProblem
		require.NoError(t, json.Unmarshal(sc.Bytes(), &p))
		problems = append(problems, p)
	}
	require.NotEmpty(t, sum.Version, "the checker printed no summary")
	require.Equal(t, len(problems), sum.Problems)
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Gateway < problems[j].Gateway })
	return problems, sum
}
