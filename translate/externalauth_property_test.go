package translate_test

import (
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// client is what Envoy's RBAC sees of a request here: the verified URI
// SAN of the client certificate ("" without one) and the peer address.
type client struct {
	id string
	ip net.IP
}

// TestAccessRulesRefuseWhatThePoliciesRefuse evaluates, on every golden
// case and example, the RBAC config Envoy receives for each route against
// clients made from the route's own policies (every identity and address
// their rules name, just inside and just outside each) and against
// outsiders, and requires Envoy's decision to be the policies' decision:
// ExternalAuth deny rules, then allow rules, and EgressPolicy
// allowedSources, all of which must admit the client.
func TestAccessRulesRefuseWhatThePoliciesRefuse(t *testing.T) {
	checked, refused, admitted := 0, 0, 0
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range cfg.Gateways {
			gr := out.Gateway(model.GatewayKey(g.Ref))
			for _, l := range g.Listeners {
				var rc *routev3.RouteConfiguration
				for _, c := range gr.Routes {
					if c.GetName() == translate.RouteConfigName(l) {
						rc = c
					}
				}
				require.NotNil(t, rc, "%s: listener %s has no route configuration", name, l.Name)
				for _, r := range l.Routes {
					for _, rule := range r.Rules {
						if r.ExternalAuth == nil && len(rule.AllowedSources) == 0 {
							continue
						}
						routes := envoyRoutesOf(rc, r, rule)
						require.NotEmpty(t, routes, "%s: no Envoy route for %s rule %d", name, r.Ref, rule.Index)
						for _, c := range sampleClients(r, rule, l.Identity) {
							want := policiesAdmit(r, rule, l.Identity, c)
							for _, er := range routes {
								got := envoyAdmits(t, er, c)
								require.Equal(t, want, got, "%s: route %s, client %q from %s: the policies say admit=%v, Envoy's RBAC says admit=%v", name, er.GetName(), c.id, c.ip, want, got)
								checked++
								if want {
									admitted++
								} else {
									refused++
								}
							}
						}
					}
				}
			}
		}
	}
	require.NotZero(t, refused, "no client was refused: the test checked nothing that matters")
	require.NotZero(t, admitted, "no client was admitted")
	t.Logf("checked %d decisions (%d refusals, %d admissions)", checked, refused, admitted)
}

// envoyRoutesOf finds the Envoy routes built from one rule of a route.
func envoyRoutesOf(rc *routev3.RouteConfiguration, r *model.RouteConfig, rule *model.RuleConfig) []*routev3.Route {
	var out []*routev3.Route
	for _, vh := range rc.GetVirtualHosts() {
		for _, er := range vh.GetRoutes() {
			if strings.HasPrefix(er.GetName(), strings.TrimSuffix(translate.RouteName(r, rule, 0), "0")) {
				out = append(out, er)
			}
		}
	}
	return out
}

// sampleClients are identities and addresses on both sides of every line
// the route's policies draw, and outsiders.
func sampleClients(r *model.RouteConfig, rule *model.RuleConfig, pattern model.IdentityPattern) []client {
	ids := map[string]bool{"": true, "spiffe://outsider.example/ns/x/sa/y": true}
	ips := map[string]bool{"192.0.2.77": true, "2001:db8::77": true}
	addCIDR := func(c string) {
		ip, n, err := net.ParseCIDR(c)
		if err != nil {
			return
		}
		ips[ip.Mask(n.Mask).String()] = true
		last := make(net.IP, len(n.IP))
		for i := range n.IP {
			last[i] = n.IP[i] | ^n.Mask[i]
		}
		ips[last.String()] = true
		// Just outside: one past the last address.
		next := make(net.IP, len(last))
		copy(next, last)
		for i := len(next) - 1; i >= 0; i-- {
			next[i]++
			if next[i] != 0 {
				break
			}
		}
		ips[next.String()] = true
	}
	for _, s := range rule.AllowedSources {
		for _, c := range s.CIDRs {
			addCIDR(c)
		}
	}
	if ea := r.ExternalAuth; ea != nil {
		for _, ar := range ea.Rules {
			for _, s := range ar.From {
				for _, c := range s.SourceCIDRs {
					addCIDR(c)
				}
				td := s.TrustDomain
				if td == "" {
					td = "corp.example"
				}
				if m := s.SPIFFEID; m != nil {
					switch {
					case m.Exact != "":
						ids[m.Exact] = true
						ids[m.Exact+"x"] = true
						ids[m.Exact+"/more"] = true
					case m.Prefix != "":
						ids[m.Prefix+"ns/a/sa/b"] = true
						ids[strings.TrimSuffix(m.Prefix, "/")+"-other/ns/a/sa/b"] = true
					case m.Pattern != "":
						ids[strings.ReplaceAll(m.Pattern, "*", "seg")] = true
						ids[strings.ReplaceAll(m.Pattern, "*", "seg/extra")] = true
						ids[strings.Replace(m.Pattern, "*", "", 1)] = true
						// A dot of the pattern is a dot, not any character.
						ids[strings.ReplaceAll(strings.ReplaceAll(m.Pattern, "*", "seg"), ".", "X")] = true
					}
				}
				ns, sa := s.Namespace, s.ServiceAccount
				if ns == "" {
					ns = "somens"
				}
				if sa == "" {
					sa = "somesa"
				}
				ids[fill(pattern, td, ns, sa)] = true
				ids[fill(pattern, td, ns+"x", sa)] = true
				ids[fill(pattern, td, ns, sa+"x")] = true
				ids[fill(pattern, "other-"+td, ns, sa)] = true
				ids["spiffe://"+td+"/workload"] = true
				// A trust domain is a whole host, not a prefix of one.
				ids[fill(pattern, td+"x", ns, sa)] = true
				ids[fill(pattern, strings.ReplaceAll(td, ".", "X"), ns, sa)] = true
			}
		}
	}
	var out []client
	for _, id := range sortedKeys(ids) {
		for _, ip := range sortedKeys(ips) {
			out = append(out, client{id: id, ip: net.ParseIP(ip)})
		}
	}
	return out
}

// fill writes the SPIFFE ID the pattern gives a workload.
func fill(p model.IdentityPattern, td, ns, sa string) string {
	return strings.NewReplacer("{trustDomain}", td, "{namespace}", ns, "{serviceAccount}", sa).Replace(p.String())
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// policiesAdmit is the README's semantics, written independently of the
// translation: every EgressPolicy source restriction must hold; a matching
// deny rule refuses; with allow rules, one must match.
func policiesAdmit(r *model.RouteConfig, rule *model.RuleConfig, pattern model.IdentityPattern, c client) bool {
	for _, s := range rule.AllowedSources {
		if !inAny(c.ip, s.CIDRs) {
			return false
		}
	}
	ea := r.ExternalAuth
	if ea == nil {
		return true
	}
	hasAllow, allowed := false, false
	for _, ar := range ea.Rules {
		matched := false
		for _, s := range ar.From {
			matched = matched || sourceMatches(s, pattern, c)
		}
		switch ar.Action {
		case model.AccessDeny:
			if matched {
				return false
			}
		case model.AccessAllow:
			hasAllow = true
			allowed = allowed || matched
		}
	}
	return !hasAllow || allowed
}

func sourceMatches(s model.AccessSource, pattern model.IdentityPattern, c client) bool {
	if len(s.SourceCIDRs) > 0 && !inAny(c.ip, s.SourceCIDRs) {
		return false
	}
	if !s.MatchesIdentity() {
		return true
	}
	if c.id == "" {
		return false
	}
	if m := s.SPIFFEID; m != nil {
		switch {
		case m.Exact != "" && c.id != m.Exact:
			return false
		case m.Prefix != "" && !strings.HasPrefix(c.id, m.Prefix):
			return false
		case m.Pattern != "":
			parts := strings.Split(m.Pattern, "*")
			for i := range parts {
				parts[i] = regexp.QuoteMeta(parts[i])
			}
			if !regexp.MustCompile("^" + strings.Join(parts, model.SPIFFESegment) + "$").MatchString(c.id) {
				return false
			}
		}
	}
	if s.TrustDomain != "" && !strings.HasPrefix(c.id, "spiffe://"+s.TrustDomain+"/") {
		return false
	}
	if s.Namespace != "" || s.ServiceAccount != "" {
		td, ns, sa, ok := pattern.Parse(c.id)
		if !ok || (s.TrustDomain != "" && td != s.TrustDomain) || (s.Namespace != "" && ns != s.Namespace) || (s.ServiceAccount != "" && sa != s.ServiceAccount) {
			return false
		}
	}
	return true
}

func inAny(ip net.IP, cidrs []string) bool {
	for _, c := range cidrs {
		if _, n, err := net.ParseCIDR(c); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// envoyAdmits evaluates the route's per-route RBAC as Envoy's RBAC filter
// does (RoleBasedAccessControlEngineImpl::handleAction): with action DENY, a
// request is refused when any policy matches, a policy matching when one of
// its permissions and one of its principals match.
func envoyAdmits(t *testing.T, r *routev3.Route, c client) bool {
	t.Helper()
	a := r.GetTypedPerFilterConfig()["envoy.filters.http.rbac"]
	if a == nil {
		return true
	}
	per := &rbacfilterv3.RBACPerRoute{}
	require.NoError(t, a.UnmarshalTo(per))
	rules := per.GetRbac().GetRules()
	if rules == nil {
		return true
	}
	anyMatch := false
	for _, name := range sortedPolicyNames(rules.GetPolicies()) {
		p := rules.GetPolicies()[name]
		perm := false
		for _, pm := range p.GetPermissions() {
			perm = perm || permissionMatches(t, pm)
		}
		prin := false
		for _, pr := range p.GetPrincipals() {
			prin = prin || principalMatches(t, pr, c)
		}
		anyMatch = anyMatch || (perm && prin)
	}
	switch rules.GetAction() {
	case rbacv3.RBAC_DENY:
		return !anyMatch
	case rbacv3.RBAC_ALLOW:
		return anyMatch
	}
	t.Fatalf("route %s: RBAC action %v is not evaluated here", r.GetName(), rules.GetAction())
	return false
}

func sortedPolicyNames(m map[string]*rbacv3.Policy) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func permissionMatches(t *testing.T, p *rbacv3.Permission) bool {
	t.Helper()
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return r.Any
	}
	t.Fatalf("permission %v is not evaluated here: extend the evaluator", p)
	return false
}

func principalMatches(t *testing.T, p *rbacv3.Principal, c client) bool {
	t.Helper()
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return id.Any
	case *rbacv3.Principal_NotId:
		return !principalMatches(t, id.NotId, c)
	case *rbacv3.Principal_OrIds:
		for _, x := range id.OrIds.GetIds() {
			if principalMatches(t, x, c) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_AndIds:
		for _, x := range id.AndIds.GetIds() {
			if !principalMatches(t, x, c) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_Authenticated_:
		// Without a client certificate there is no authenticated principal
		// (AuthenticatedMatcher::matches needs an SSL connection).
		if c.id == "" {
			return false
		}
		m := id.Authenticated.GetPrincipalName()
		if m == nil {
			return true
		}
		return stringMatches(t, m, c.id)
	case *rbacv3.Principal_DirectRemoteIp:
		return cidrMatches(id.DirectRemoteIp, c.ip)
	case *rbacv3.Principal_RemoteIp:
		return cidrMatches(id.RemoteIp, c.ip)
	}
	t.Fatalf("principal %v is not evaluated here: extend the evaluator", p)
	return false
}

func stringMatches(t *testing.T, m *matcherv3.StringMatcher, s string) bool {
	t.Helper()
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, p.Suffix)
	case *matcherv3.StringMatcher_SafeRegex:
		// Envoy's safe_regex matches the whole value (RE2::FullMatch).
		return regexp.MustCompile("^(?:" + p.SafeRegex.GetRegex() + ")$").MatchString(s)
	}
	t.Fatalf("string matcher %v is not evaluated here", m)
	return false
}

func cidrMatches(r *corev3.CidrRange, ip net.IP) bool {
	_, n, err := net.ParseCIDR(r.GetAddressPrefix() + "/" + strconv.FormatUint(uint64(r.GetPrefixLen().GetValue()), 10))
	return err == nil && n.Contains(ip)
}
