package xds

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Names in Envoy's NACK messages are found as whole names, the longest
// first: a message about route/https is not also about route/http.
func TestNamedIn(t *testing.T) {
	names := []string{"route/http", "route/https", "backend/default/openai", "hop/default/openai"}
	require.Equal(t, []string{"route/https"}, namedIn(`Error adding/updating listener(s) route/https: bad`, names))
	require.Equal(t, []string{"route/http"}, namedIn(`route/http: unknown field`, names))
	require.Equal(t, []string{"backend/default/openai", "hop/default/openai"}, namedIn("Cluster \"hop/default/openai\": x\ncluster: backend/default/openai: y", names))
	require.Empty(t, namedIn(`backend/default/openai-2: no`, names), "a longer name is another resource")
	require.Empty(t, namedIn(`nothing named`, names))
}

// A NACK stands on its objects only while the rejected version is the
// last one of its type the node was sent.
func TestNackConditionsStandUntilReplaced(t *testing.T) {
	k := &Nack{Type: "clusters", Version: "v2", Message: "bad", Resources: []string{"backend/default/a"}, Objects: []string{"Backend/a"}}
	node := NodeStatus{NodeID: "n1", Gateway: "egress", Sent: map[string]string{"clusters": "v2"}, Acked: map[string]string{"clusters": "v1"}, LastNack: k}
	cs := nackConditions([]NodeStatus{node})
	require.Len(t, cs, 1)
	require.Equal(t, "Backend/a", cs[0].Object)
	require.Equal(t, ConditionProgrammed, cs[0].Type)
	require.False(t, cs[0].Status)
	require.Contains(t, cs[0].Message, "node n1 (gateway egress) rejected clusters backend/default/a of version v2: bad")

	node.Sent = map[string]string{"clusters": "v3"}
	require.Empty(t, nackConditions([]NodeStatus{node}), "a later version replaced the rejected one")
	node.Sent, node.LastNack = map[string]string{"clusters": "v2"}, &Nack{Type: "clusters", Version: "v2"}
	require.Empty(t, nackConditions([]NodeStatus{node}), "nothing maps: no condition")
}
