package envoysim

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// EnvoyBuild returns an Options.Node function that describes the node the
// way Envoy major.minor.patch does: user_agent_name "envoy" and
// user_agent_build_version.
func EnvoyBuild(major, minor, patch uint32) func(*corev3.Node) {
	return func(n *corev3.Node) {
		n.UserAgentName = "envoy"
		n.UserAgentVersionType = &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: major, MinorNumber: minor, Patch: patch},
		}}
	}
}

// BuildVersionMetadata returns an Options.Node function that sets only the
// build_version node metadata older Envoys and some bootstraps carry, e.g.
// "5f9a…/1.36.4/Clean/RELEASE/BoringSSL".
func BuildVersionMetadata(version string) func(*corev3.Node) {
	return func(n *corev3.Node) {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			"build_version": structpb.NewStringValue(fmt.Sprintf("0123456789abcdef0123456789abcdef01234567/%s/Clean/RELEASE/BoringSSL", version)),
		}}
	}
}
