package xds

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	awsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/aws/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/pmezard/go-difflib/difflib"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// ConfigDiff is what serving one configuration instead of another changes,
// gateway by gateway, in the resources tollgate hands out.
type ConfigDiff struct {
	// Gateways are every gateway of either configuration, sorted by key,
	// changed or not.
	Gateways []GatewayDiff `json:"gateways"`
}

// GatewayDiff is what changes for the Envoys (and rate limit service
// instances) of one gateway. A gateway that only the new configuration has
// has every resource added; one that it no longer has, every resource
// removed (its Envoys are then served an empty configuration).
type GatewayDiff struct {
	// Gateway is the gateway's key, its Envoys' node.cluster.
	Gateway string `json:"gateway"`
	// Added, Removed and Changed are sorted by type (listeners, routes,
	// clusters, endpoints, secrets, ratelimit) and name.
	Added   []ResourceDiff `json:"added"`
	Removed []ResourceDiff `json:"removed"`
	Changed []ResourceDiff `json:"changed"`
	// Unchanged counts the resources that stay as they are.
	Unchanged int `json:"unchanged"`
}

// ResourceDiff is one added, removed or changed resource.
type ResourceDiff struct {
	// Type is the short type name: listeners, routes, clusters,
	// endpoints, secrets or ratelimit (the gateway's RateLimitConfig).
	Type string `json:"type"`
	// Name is the resource's name (for endpoints, its cluster's).
	Name string `json:"name"`
	// Diff is a unified diff of the resource rendered as YAML, from
	// a/<type>/<name> to b/<type>/<name> (from /dev/null for an added
	// resource, to /dev/null for a removed one), with 3 lines of context.
	// Secret values never appear in it: see Note.
	Diff string `json:"diff"`
	// Note says what the diff cannot show: "value changed (hidden)" for a
	// resource whose secret value (API key, private key, the static AWS
	// keys inline in a cluster) changed. A secret is
	// rendered as its name, its type and a SHA-256 digest of its value;
	// trust bundles as a line per certificate.
	Note string `json:"note,omitempty"`
}

// Changes counts the added, removed and changed resources of every
// gateway: zero means serving the new configuration changes nothing.
func (d *ConfigDiff) Changes() int {
	n := 0
	for _, g := range d.Gateways {
		n += len(g.Added) + len(g.Removed) + len(g.Changed)
	}
	return n
}

// NoteValueChanged is the Note of a secret whose hidden value changed.
const NoteValueChanged = "value changed (hidden)"

// diffTypes are the short types in the order a GatewayDiff lists them.
var diffTypes = []string{"listeners", "routes", "clusters", "endpoints", "secrets", "ratelimit"}

// Diff translates current (what is served; nil for nothing) and next (nil
// for nothing) and compares their resources, gateway by gateway. It only
// compares: next should be a Config that passed Server.Check, as
// store.Store.Preview returns it when tollgate serve set Check. The result
// is deterministic: the same inputs give the same ConfigDiff, byte for
// byte.
func Diff(current, next *model.Config) (*ConfigDiff, error) {
	cur := &translate.Output{}
	if current != nil {
		out, err := translate.Translate(current)
		if err != nil {
			return nil, fmt.Errorf("translate the configuration being served (this is a tollgate bug; please report it): %w", err)
		}
		cur = out
	}
	nxt := &translate.Output{}
	if next != nil {
		out, err := translate.Translate(next)
		if err != nil {
			return nil, fmt.Errorf("translate the new configuration (this is a tollgate bug; please report it): %w", err)
		}
		nxt = out
	}
	keys := map[string]bool{}
	for _, g := range cur.Gateways {
		keys[g.Key] = true
	}
	for _, g := range nxt.Gateways {
		keys[g.Key] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	d := &ConfigDiff{Gateways: make([]GatewayDiff, 0, len(sorted))}
	for _, key := range sorted {
		gd, err := diffGateway(key, cur.Gateway(key), nxt.Gateway(key))
		if err != nil {
			return nil, err
		}
		d.Gateways = append(d.Gateways, gd)
	}
	return d, nil
}

// resource is one resource of a gateway with its short type.
type resource struct {
	typ, name string
	msg       proto.Message
}

// gatewayResources lists every resource of g (nil: none), keyed by type
// and name.
func gatewayResources(g *translate.GatewayResources) (map[string]resource, error) {
	out := map[string]resource{}
	if g == nil {
		return out, nil
	}
	var all []resource
	for _, r := range g.Listeners {
		all = append(all, resource{"listeners", r.GetName(), r})
	}
	for _, r := range g.Routes {
		all = append(all, resource{"routes", r.GetName(), r})
	}
	for _, r := range g.Clusters {
		all = append(all, resource{"clusters", r.GetName(), r})
	}
	for _, r := range g.Endpoints {
		all = append(all, resource{"endpoints", r.GetClusterName(), r})
	}
	for _, r := range g.Secrets {
		all = append(all, resource{"secrets", r.GetName(), r})
	}
	if c := g.RateLimitConfig; c != nil {
		all = append(all, resource{"ratelimit", c.GetName(), c})
	}
	for _, r := range all {
		k := resourceKey(r.typ, r.name)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("gateway %s has two %s named %q (this is a tollgate bug; please report it)", g.Key, r.typ, r.name)
		}
		out[k] = r
	}
	return out, nil
}

// resourceKey orders resources by type (in diffTypes order), then name.
func resourceKey(typ, name string) string {
	rank := len(diffTypes)
	for i, t := range diffTypes {
		if t == typ {
			rank = i
		}
	}
	return fmt.Sprintf("%02d\x00%s", rank, name)
}

// diffGateway compares the resources of one gateway; either side may be
// nil (the gateway is added or removed).
func diffGateway(key string, cur, next *translate.GatewayResources) (GatewayDiff, error) {
	gd := GatewayDiff{Gateway: key, Added: []ResourceDiff{}, Removed: []ResourceDiff{}, Changed: []ResourceDiff{}}
	a, err := gatewayResources(cur)
	if err != nil {
		return gd, err
	}
	b, err := gatewayResources(next)
	if err != nil {
		return gd, err
	}
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		ra, inA := a[k]
		rb, inB := b[k]
		switch {
		case !inA:
			text, _, err := render(rb)
			if err != nil {
				return gd, fmt.Errorf("gateway %s: %w", key, err)
			}
			gd.Added = append(gd.Added, ResourceDiff{Type: rb.typ, Name: rb.name, Diff: unified("", text, "/dev/null", "b/"+rb.typ+"/"+rb.name)})
		case !inB:
			text, _, err := render(ra)
			if err != nil {
				return gd, fmt.Errorf("gateway %s: %w", key, err)
			}
			gd.Removed = append(gd.Removed, ResourceDiff{Type: ra.typ, Name: ra.name, Diff: unified(text, "", "a/"+ra.typ+"/"+ra.name, "/dev/null")})
		default:
			// Identical bytes are identical resources; different bytes may
			// still be the same content (an Any packed with another field
			// order), which the canonical rendering settles.
			same, err := sameBytes(ra.msg, rb.msg)
			if err != nil {
				return gd, fmt.Errorf("gateway %s: %w", key, err)
			}
			if same {
				gd.Unchanged++
				continue
			}
			ta, ha, err := render(ra)
			if err != nil {
				return gd, fmt.Errorf("gateway %s: %w", key, err)
			}
			tb, hb, err := render(rb)
			if err != nil {
				return gd, fmt.Errorf("gateway %s: %w", key, err)
			}
			if ta == tb {
				gd.Unchanged++
				continue
			}
			rd := ResourceDiff{Type: ra.typ, Name: ra.name, Diff: unified(ta, tb, "a/"+ra.typ+"/"+ra.name, "b/"+rb.typ+"/"+rb.name)}
			if ha != hb {
				rd.Note = NoteValueChanged
			}
			gd.Changed = append(gd.Changed, rd)
		}
	}
	return gd, nil
}

// sameBytes reports whether a and b marshal to the same deterministic
// bytes.
func sameBytes(a, b proto.Message) (bool, error) {
	da, err := digestOf(a)
	if err != nil {
		return false, err
	}
	db, err := digestOf(b)
	if err != nil {
		return false, err
	}
	return da == db, nil
}

// unified is the unified diff of two renderings, with 3 lines of context.
func unified(a, b, from, to string) string {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: lines(a), B: lines(b), FromFile: from, ToFile: to, Context: 3,
	})
	if err != nil {
		// Writing to a strings.Builder cannot fail.
		panic(err)
	}
	return text
}

// lines splits text into lines that keep their "\n"; "" has none.
func lines(text string) []string {
	if text == "" {
		return nil
	}
	return difflib.SplitLines(strings.TrimSuffix(text, "\n"))
}

// render is a resource as YAML, with every secret value replaced by a
// digest, and a digest of the values it hid ("" when it hid none; trust
// bundles, which are public, are summarised, not hidden).
func render(r resource) (text, hidden string, err error) {
	if sec, ok := r.msg.(*tlsv3.Secret); ok {
		return renderSecret(sec)
	}
	shown, hidden := hideInline(r.msg)
	y, err := protoYAML(shown)
	if err != nil {
		return "", "", fmt.Errorf("render %s %s: %w", r.typ, r.name, err)
	}
	return y, hidden, nil
}

// protoYAML renders m as YAML with its proto field names (as Envoy's
// documentation and config_dump name them). protojson's whitespace is
// deliberately unstable; the YAML re-marshalling is deterministic, with
// sorted keys.
func protoYAML(m proto.Message) (string, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(m)
	if err != nil {
		return "", err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return "", err
	}
	return string(y), nil
}

// renderSecret renders an SDS secret as its name, type and SHA-256 digest
// of its value, never the value. The certificate chain of a TLS
// certificate, which every peer sees, is listed certificate by
// certificate; so is a validation context (trusted CAs, CRLs, pins), which
// is public, but with every inline bundle summarised the same way.
func renderSecret(sec *tlsv3.Secret) (text, hidden string, err error) {
	view := map[string]any{"name": sec.GetName()}
	var value proto.Message
	switch t := sec.GetType().(type) {
	case *tlsv3.Secret_GenericSecret:
		view["type"], value = "generic secret", t.GenericSecret
	case *tlsv3.Secret_TlsCertificate:
		view["type"], value = "tls certificate", t.TlsCertificate
		if chain := t.TlsCertificate.GetCertificateChain(); chain != nil {
			if data, ok := inlineData(chain); ok {
				view["certificate_chain"] = pemLines(data)
			}
		}
	case *tlsv3.Secret_SessionTicketKeys:
		view["type"], value = "session ticket keys", t.SessionTicketKeys
	case *tlsv3.Secret_ValidationContext:
		view["type"], value = "validation context", t.ValidationContext
	default:
		view["type"] = "none"
	}
	if value != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(value)
		if err != nil {
			return "", "", fmt.Errorf("render secrets %s: %w", sec.GetName(), err)
		}
		sum := sha256.Sum256(b)
		view["sha256"] = hex.EncodeToString(sum[:])
		if sensitive(sec) {
			hidden = view["sha256"].(string)
			view["value"] = "hidden"
			if files := filenames(value); len(files) > 0 {
				view["files"] = files // where Envoy reads it: paths, not values
			}
		}
	}
	if vc, ok := sec.GetType().(*tlsv3.Secret_ValidationContext); ok {
		shown := proto.Clone(vc.ValidationContext)
		summariseBundles(shown.ProtoReflect())
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(shown)
		if err != nil {
			return "", "", fmt.Errorf("render secrets %s: %w", sec.GetName(), err)
		}
		view["validation_context"] = json.RawMessage(js)
	}
	js, err := json.Marshal(view)
	if err != nil {
		return "", "", fmt.Errorf("render secrets %s: %w", sec.GetName(), err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return "", "", fmt.Errorf("render secrets %s: %w", sec.GetName(), err)
	}
	return string(y), hidden, nil
}

// inlineData is the content of an inline data source.
func inlineData(ds *corev3.DataSource) ([]byte, bool) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, true
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), true
	}
	return nil, false
}

// pemLines describes a PEM bundle a line per block: each certificate by
// subject, expiry and SHA-256 fingerprint (what `openssl x509 -fingerprint
// -sha256` prints), each CRL by issuer, next update and number of revoked
// certificates, anything else by type, size and digest. Content that is
// not PEM is a size and a digest: it is never shown.
func pemLines(data []byte) []string {
	var out []string
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		sum := sha256.Sum256(block.Bytes)
		fp := hex.EncodeToString(sum[:])
		switch block.Type {
		case "CERTIFICATE":
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				out = append(out, fmt.Sprintf("certificate %q, not after %s, sha256 %s", c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339), fp))
				continue
			}
		case "X509 CRL":
			if l, err := x509.ParseRevocationList(block.Bytes); err == nil {
				out = append(out, fmt.Sprintf("crl of %q, next update %s, %d revoked, sha256 %s", l.Issuer.String(), l.NextUpdate.UTC().Format(time.RFC3339), len(l.RevokedCertificateEntries), fp))
				continue
			}
		}
		out = append(out, fmt.Sprintf("%s block, %d bytes, sha256 %s", strings.ToLower(block.Type), len(block.Bytes), fp))
	}
	if strings.TrimSpace(string(rest)) != "" {
		sum := sha256.Sum256(rest)
		what := "content that is not PEM"
		if len(out) > 0 {
			what = "more content that is not PEM"
		}
		out = append(out, fmt.Sprintf("%s, %d bytes, sha256 %s", what, len(rest), hex.EncodeToString(sum[:])))
	}
	return out
}

// summariseBundles replaces every inline data source below m with its
// pemLines, one per line.
func summariseBundles(m protoreflect.Message) {
	rewrite(m, func(x proto.Message) bool {
		ds, ok := x.(*corev3.DataSource)
		if !ok {
			return false
		}
		if data, ok := inlineData(ds); ok {
			ds.Specifier = &corev3.DataSource_InlineString{InlineString: strings.Join(pemLines(data), "\n") + "\n"}
		}
		return true
	})
}

// hideInline returns a copy of m in which every inline data source (keys,
// certificates) and every inline AWS credential is replaced by its size and
// digest, and a digest of everything it hid ("" when nothing). The bodies
// of direct responses, which tollgate writes itself, stay. Secrets belong
// in SDS; this is for the few that must travel inside a cluster (static
// AWS keys, which Envoy's SigV4 signer only takes inline), and for any
// that a future translation puts elsewhere.
func hideInline(m proto.Message) (proto.Message, string) {
	c := proto.Clone(m)
	h := sha256.New()
	n := 0
	hide := func(b []byte) string {
		n++
		sum := sha256.Sum256(b)
		h.Write(sum[:])
		return hiddenValue(b)
	}
	rewrite(c.ProtoReflect(), func(x proto.Message) bool {
		switch v := x.(type) {
		case *routev3.DirectResponseAction:
			return true
		case *corev3.DataSource:
			if data, ok := inlineData(v); ok {
				v.Specifier = &corev3.DataSource_InlineString{InlineString: hide(data)}
			}
			return true
		case *awsv3.InlineCredentialProvider:
			v.AccessKeyId = hide([]byte(v.AccessKeyId))
			v.SecretAccessKey = hide([]byte(v.SecretAccessKey))
			if v.SessionToken != "" {
				v.SessionToken = hide([]byte(v.SessionToken))
			}
			return true
		}
		return false
	})
	if n == 0 {
		return c, ""
	}
	return c, hex.EncodeToString(h.Sum(nil))
}

// hiddenValue stands for a secret value in a rendering.
func hiddenValue(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("hidden: %d bytes, sha256 %s", len(b), hex.EncodeToString(sum[:]))
}

// filenames lists the files the data sources below m name, sorted.
func filenames(m proto.Message) []string {
	seen := map[string]bool{}
	rewrite(proto.Clone(m).ProtoReflect(), func(x proto.Message) bool {
		ds, ok := x.(*corev3.DataSource)
		if !ok {
			return false
		}
		if f := ds.GetFilename(); f != "" {
			seen[f] = true
		}
		return true
	})
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// rewrite calls f on every message below m (m included), depth first,
// also inside Anys (which it repacks); where f returns true it does not
// descend further.
func rewrite(m protoreflect.Message, f func(proto.Message) bool) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return // an unknown type: protojson refuses it anyway
		}
		rewrite(inner.ProtoReflect(), f)
		_ = a.MarshalFrom(inner)
		return
	}
	if f(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				rewrite(v.List().Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				rewrite(mv.Message(), f)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			rewrite(v.Message(), f)
		}
		return true
	})
}
