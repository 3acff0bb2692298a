package xds_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/xds"
)

// A resource Envoy's constraints refuse is not published, and Apply's
// error names the file, line, object and Envoy field that produced it (the
// store shows it on /status/policies as a violation).
func TestApplyPlacesEnvoyRefusalsOnTheirObjects(t *testing.T) {
	s := xds.NewServer(context.Background(), xds.Options{})
	cfg := config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))
	negative := -time.Second // no model validation lets this through today
	cfg.Backends[0].Egress.ConnectTimeout = &negative
	err := s.Apply(cfg)
	vs, ok := model.AsViolations(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "p.yaml:11: Backend/openai: Cluster[backend/default/openai].connect_timeout: envoy would refuse this: value must be greater than 0s", vs.Error())
	require.Empty(t, s.Versions("a"), "nothing is published")
}
