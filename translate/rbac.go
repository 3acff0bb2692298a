package translate

import (
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

const filterRBAC = "envoy.filters.http.rbac"

// needsRBAC reports whether a route of the listener restricts its clients
// (see externalauth.go).
func needsRBAC(l *model.ListenerConfig) bool {
	for _, r := range l.Routes {
		for _, rule := range r.Rules {
			if needsAccessRBAC(r, rule) {
				return true
			}
		}
	}
	return false
}

func cidrRange(c string) *corev3.CidrRange {
	_, n, err := net.ParseCIDR(c)
	if err != nil {
		// The policy validated it; keep going with a host route.
		return &corev3.CidrRange{AddressPrefix: c, PrefixLen: wrapperspb.UInt32(32)}
	}
	ones, _ := n.Mask.Size()
	return &corev3.CidrRange{AddressPrefix: n.IP.String(), PrefixLen: wrapperspb.UInt32(uint32(ones))}
}
