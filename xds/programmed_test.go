package xds_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

const (
	routeType   = resourcev3.RouteType
	clusterType = resourcev3.ClusterType
	waitTimeout = 10 * time.Second
	pollEvery   = 10 * time.Millisecond
)

func programmedOf(s *xds.Server) map[string]model.Condition {
	out := map[string]model.Condition{}
	for _, c := range s.ProgrammedConditions() {
		out[c.Object] = c
	}
	return out
}

// TestProgrammedFollowsTheACKsOfEveryEnvoy checks Programmed per object:
// no Envoy connected, then every Envoy of the gateway ACKed, then one
// Envoy that rejects the object's route while the other ACKs it; an
// object no gateway uses is NotInUse.
func TestProgrammedFollowsTheACKsOfEveryEnvoy(t *testing.T) {
	src := strings.ReplaceAll(twoGateways, "TIMEOUT", "60s") + `---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: unused}
spec: {provider: anthropic}
`
	s := xds.NewServer(context.Background(), xds.Options{})
	require.NoError(t, s.Apply(config(t, src)))
	addr := serve(t, s)

	p := programmedOf(s)
	require.Equal(t, xds.ReasonNoEnvoyConnected, p["HTTPRoute/r"].Reason, p["HTTPRoute/r"])
	require.False(t, p["HTTPRoute/r"].Status)
	require.Equal(t, xds.ReasonNotInUse, p["Backend/unused"].Reason)
	require.Equal(t, xds.ReasonNoEnvoyConnected, p["Gateway/team/b"].Reason)

	connect := func(node string) *envoysim.Client {
		c, err := envoysim.New(context.Background(), addr, envoysim.Options{NodeID: node, Gateway: "a",
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c
	}
	c1, c2 := connect("node-1"), connect("node-2")
	for _, c := range []*envoysim.Client{c1, c2} {
		_, err := c.WaitFor(waitCtx(t), func(st envoysim.State) bool { return len(st.Names(routeType)) == 1 && len(st.Names(clusterType)) > 0 })
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return programmedOf(s)["HTTPRoute/r"].Status }, waitTimeout, pollEvery)
	p = programmedOf(s)
	require.Equal(t, xds.ReasonProgrammed, p["HTTPRoute/r"].Reason)
	require.Contains(t, p["HTTPRoute/r"].Message, "all 2 Envoy(s) of Gateway/a (node-1, node-2)")
	require.True(t, p["Backend/openai"].Status, p["Backend/openai"])
	require.True(t, p["Gateway/a"].Status)
	// Gateway b has no Envoy; the objects only a uses are still Programmed.
	require.Equal(t, xds.ReasonNoEnvoyConnected, p["Gateway/team/b"].Reason)

	// A third Envoy that NACKs routes never ACKs the route's version: the
	// route is Pending (its RejectedByEnvoy condition comes from
	// Conditions), while what that node ACKed stays Programmed.
	c3, err := envoysim.New(context.Background(), addr, envoysim.Options{NodeID: "node-3", Gateway: "a",
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Reject: func(typeURL string, _ proto.Message) error {
			if typeURL == routeType {
				return errors.New("route refused")
			}
			return nil
		}})
	require.NoError(t, err)
	t.Cleanup(c3.Close)
	require.Eventually(t, func() bool {
		c := programmedOf(s)["HTTPRoute/r"]
		return !c.Status && c.Reason == xds.ReasonPending
	}, waitTimeout, pollEvery)
	c := programmedOf(s)["HTTPRoute/r"]
	require.Contains(t, c.Message, "2 of 3 Envoy(s) of Gateway/a have ACKed it; waiting for node-3")
	// The Backend's cluster is ACKed by all three: still Programmed.
	require.Eventually(t, func() bool { return programmedOf(s)["Backend/openai"].Status }, waitTimeout, pollEvery)
}
