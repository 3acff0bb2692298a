package translate

import (
	"fmt"

	"github.com/tollgate-dev/tollgate/model"
)

// Every name one Envoy resource uses to refer to another is built here, so
// that references cannot drift apart. Names are readable and deterministic:
// the same policy set always yields the same names.

// ListenerName names the Envoy listener for a gateway listener.
func ListenerName(l *model.ListenerConfig) string { return "listener/" + l.Name }

// RouteConfigName names the RDS resource a listener's HCM asks for.
func RouteConfigName(l *model.ListenerConfig) string { return "route/" + l.Name }

// StatPrefix is the HCM stat prefix of a listener.
func StatPrefix(l *model.ListenerConfig) string { return l.Name }

// ClusterName names a backend's cluster; EDS resources use the same name.
func ClusterName(b *model.BackendConfig) string {
	return "backend/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// VirtualHostName names the virtual host for a hostname ("*" for any).
func VirtualHostName(hostname string) string { return "vhost/" + hostname }

// RouteName names one Envoy route: a route rule's match.
func RouteName(r *model.RouteConfig, rule *model.RuleConfig, match int) string {
	rulePart := fmt.Sprint(rule.Index)
	if rule.Name != "" {
		rulePart = rule.Name
	}
	return fmt.Sprintf("httproute/%s/%s/rule/%s/match/%d", r.Ref.Namespace, r.Ref.Name, rulePart, match)
}

// CredentialSecretName names the SDS generic secret holding a backend's API
// key.
func CredentialSecretName(b *model.BackendConfig) string {
	return "credential/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// OAuth2ClientSecretName names the SDS generic secret holding a backend's
// OAuth2 client secret.
func OAuth2ClientSecretName(b *model.BackendConfig) string {
	return "oauth2-client-secret/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// OAuth2ClusterName names the cluster of a backend's OAuth2 token endpoint.
func OAuth2ClusterName(b *model.BackendConfig) string {
	return "oauth2-token/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// ValidationSecretName names the SDS validation context (CA, CRL, pins) of
// a backend.
func ValidationSecretName(b *model.BackendConfig) string {
	return "tls-validation/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// ClientCertSecretName names the SDS TLS certificate a gateway presents to
// a backend.
func ClientCertSecretName(b *model.BackendConfig) string {
	return "tls-client/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// ParentClusterName names the cluster (and EDS service) through which a
// Parent-mode gateway reaches its parent gateway.
func ParentClusterName(parent model.Ref) string {
	return "parent/" + parent.Namespace + "/" + parent.Name
}

// ExtAuthzFilterName names the ext_authz HTTP filter of an ExternalAuth's
// authorization service; its routes enable it under this name.
func ExtAuthzFilterName(policy model.Ref) string {
	return filterExtAuthz + "/" + policy.Namespace + "/" + policy.Name
}

// ForwardedRouteHeader carries, from a Parent-mode gateway to its parent,
// the route the child matched.
const ForwardedRouteHeader = "x-tollgate-route"

// ForwardedRouteValue is ForwardedRouteHeader's value for a route:
// <namespace>/<name>.
func ForwardedRouteValue(r *model.RouteConfig) string {
	return r.Ref.Namespace + "/" + r.Ref.Name
}

// SPIREAgentCluster is the static bootstrap cluster (rendered by tollgate
// bootstrap --spiffe-socket) through which an Envoy reaches its local SPIRE
// agent's SDS: its own SVID and the trust bundles.
const SPIREAgentCluster = "spire_agent"

// ListenerCertSecretName names the SDS TLS certificate (from files) an
// HTTPS listener presents.
func ListenerCertSecretName(t *model.ListenerTLSConfig, l *model.ListenerConfig) string {
	return "listener-tls/" + t.Gateway.Namespace + "/" + t.Gateway.Name + "/" + l.Name
}

// ListenerValidationSecretName names the SDS validation context (a CA
// bundle from a file) an HTTPS listener verifies clients with.
func ListenerValidationSecretName(t *model.ListenerTLSConfig, l *model.ListenerConfig) string {
	return "listener-validation/" + t.Gateway.Namespace + "/" + t.Gateway.Name + "/" + l.Name
}
