package translate

import (
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

const filterRBAC = "envoy.filters.http.rbac"

func needsRBAC(l *model.ListenerConfig) bool {
	for _, r := range l.Routes {
		for _, rule := range r.Rules {
			if len(rule.AllowedSources) > 0 {
				return true
			}
		}
	}
	return false
}

// SourceRBAC allows a route only to clients whose address (the connection's
// peer: workloads talk to the gateway directly) is in every set of CIDRs;
// others get 403. Each set comes from one backend's EgressPolicy.
func SourceRBAC(sets [][]string) *rbacfilterv3.RBACPerRoute {
	var all []*rbacv3.Principal
	for _, cidrs := range sets {
		var any []*rbacv3.Principal
		for _, c := range cidrs {
			any = append(any, &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidrRange(c)}})
		}
		all = append(all, &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: any}}})
	}
	return &rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_ALLOW,
		Policies: map[string]*rbacv3.Policy{"allowed-sources": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: all}}}},
		}},
	}}}
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
