package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	dnscommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/model"
)

// caresResolverName is the c-ares DNS resolver extension, Envoy's default
// resolver on Linux; naming it explicitly is how a cluster gets its own
// resolvers.
const caresResolverName = "envoy.network.dns_resolver.cares"

// lookupFamilies maps DNSPolicy address families to Envoy's. Envoy's own
// default (AUTO, IPv6 first) is not tollgate's: unset means IPv4Preferred.
var lookupFamilies = map[string]dnscommonv3.DnsLookupFamily{
	model.FamilyIPv4:          dnscommonv3.DnsLookupFamily_V4_ONLY,
	model.FamilyIPv6:          dnscommonv3.DnsLookupFamily_V6_ONLY,
	model.FamilyIPv4Preferred: dnscommonv3.DnsLookupFamily_V4_PREFERRED,
	// AUTO: "first perform a lookup for addresses in the IPv6 family and
	// fallback to a lookup for addresses in the IPv4 family".
	model.FamilyIPv6Preferred: dnscommonv3.DnsLookupFamily_AUTO,
	// ALL: both families; with all_addresses_in_single_endpoint Envoy
	// tries the addresses of the one endpoint in turn (happy eyeballs).
	model.FamilyAny: dnscommonv3.DnsLookupFamily_ALL,
}

// DNSCluster is the envoy.cluster.dns configuration of a hostname backend
// as one gateway's Envoys resolve it. Logical DNS semantics
// (all_addresses_in_single_endpoint) suit CDN-fronted APIs whose address
// set rotates: one endpoint, re-resolved, connections spread by DNS.
func DNSCluster(s model.DNSSettings) (*dnsclusterv3.DnsCluster, error) {
	family := s.AddressFamily
	if family == "" {
		family = model.DefaultAddressFamily
	}
	dc := &dnsclusterv3.DnsCluster{
		AllAddressesInSingleEndpoint: true,
		DnsLookupFamily:              lookupFamilies[family],
	}
	if s.RefreshRate != nil {
		dc.DnsRefreshRate = durationpb.New(*s.RefreshRate)
	}
	if s.RespectTTL != nil {
		dc.RespectDnsTtl = *s.RespectTTL
	}
	if s.MinRefreshRate != nil {
		// Envoy 1.39+: a Requirement (dnsClusterFeatures).
		dc.DnsMinRefreshRate = durationpb.New(*s.MinRefreshRate)
	}
	if len(s.Resolvers) > 0 {
		// use_resolvers_as_fallback stays false: the list replaces the
		// host's resolvers instead of standing in when it has none.
		cares := &caresv3.CaresDnsResolverConfig{}
		for _, r := range s.Resolvers {
			cares.Resolvers = append(cares.Resolvers, &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Protocol:      corev3.SocketAddress_UDP,
				Address:       r.IP,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: r.Port},
			}}})
		}
		cfg, err := toAny(cares)
		if err != nil {
			return nil, err
		}
		dc.TypedDnsResolverConfig = &corev3.TypedExtensionConfig{Name: caresResolverName, TypedConfig: cfg}
	}
	return dc, nil
}

// dnsClusterType is the cluster_type of a DNS cluster (the
// envoy.cluster.dns extension; Envoy 1.40 deprecates the top-level DNS
// fields).
func dnsClusterType(dc *dnsclusterv3.DnsCluster) (*clusterv3.Cluster_ClusterType, error) {
	dns, err := toAny(dc)
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
		Name:        "envoy.cluster.dns",
		TypedConfig: dns,
	}}, nil
}

// dnsMinRefreshRate is DnsCluster.dns_min_refresh_rate, new in Envoy 1.39.
var dnsMinRefreshRate = feature{
	feature:    "DNSPolicy minRefreshRate (DnsCluster.dns_min_refresh_rate)",
	minVersion: Version{1, 39},
	setting:    "minRefreshRate",
	field:      "envoy.extensions.clusters.dns.v3.DnsCluster.dns_min_refresh_rate",
}

// dnsClusterFeatures lists what dc uses that OldestEnvoy lacks.
func dnsClusterFeatures(dc *dnsclusterv3.DnsCluster) []feature {
	var out []feature
	if dc.GetDnsMinRefreshRate() != nil {
		out = append(out, dnsMinRefreshRate)
	}
	return out
}

// dnsSets reports whether s itself asks for f.
func dnsSets(s model.DNSSettings, f feature) bool {
	return f == dnsMinRefreshRate && s.MinRefreshRate != nil
}
