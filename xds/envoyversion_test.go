package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

func TestEnvoyVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		node func(*corev3.Node)
		want string
		v    translate.Version
	}{
		{"build version", envoysim.EnvoyBuild(1, 38, 2), "1.38.2", translate.Version{Major: 1, Minor: 38}},
		{"metadata", envoysim.BuildVersionMetadata("1.37.2"), "1.37.2", translate.Version{Major: 1, Minor: 37}},
		{"user agent version", func(n *corev3.Node) {
			n.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "v1.39.0-dev"}
		}, "1.39.0", translate.Version{Major: 1, Minor: 39}},
		{"build version wins", func(n *corev3.Node) {
			envoysim.BuildVersionMetadata("1.36.0")(n)
			envoysim.EnvoyBuild(1, 40, 1)(n)
		}, "1.40.1", translate.Version{Major: 1, Minor: 40}},
		{"garbage metadata", func(n *corev3.Node) { envoysim.BuildVersionMetadata("main")(n) }, "", translate.Version{}},
		{"nothing", func(*corev3.Node) {}, "", translate.Version{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &corev3.Node{}
			tc.node(n)
			v, text, ok := envoyVersion(n)
			require.Equal(t, tc.want != "", ok)
			require.Equal(t, tc.want, text)
			require.Equal(t, tc.v, v)
		})
	}
}
