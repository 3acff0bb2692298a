package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
)

// apiPrefix is the path of tollgate's API group and version on the admin
// server.
const apiPrefix = "/apis/tollgate.dev/v1alpha1"

// apiResource is one entry of the discovery document: a kind and the
// plural name of its collection.
type apiResource struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced"`
}

// apiResourceList is the discovery document, GET apiPrefix.
type apiResourceList struct {
	Resources []apiResource `json:"resources"`
}

// kindMap maps what users type for a kind (Gateway, gateways, gateway) to
// the server's resources, as discovery lists them.
type kindMap struct {
	resources []apiResource
}

// discover fetches the discovery document once.
func discover(ctx context.Context, c *apiClient) (*kindMap, error) {
	var l apiResourceList
	if err := c.do(ctx, http.MethodGet, apiPrefix, nil, &l); err != nil {
		return nil, fmt.Errorf("discover the server's kinds: %w", err)
	}
	if len(l.Resources) == 0 {
		return nil, fmt.Errorf("discover the server's kinds: %s%s lists none (is it a tollgate with its API enabled?)", c.base, apiPrefix)
	}
	return &kindMap{resources: l.Resources}, nil
}

// lookup finds the resource of a kind given as its kind, plural or
// lower-case singular, in any case; the kind with an s is taken for its
// plural too (gateways), whatever the server's plural.
func (k *kindMap) lookup(name string) (apiResource, error) {
	for _, r := range k.resources {
		if strings.EqualFold(name, r.Kind) || strings.EqualFold(name, r.Name) || strings.EqualFold(name, r.Kind+"s") {
			return r, nil
		}
	}
	return apiResource{}, fmt.Errorf("unknown kind %q: use one of %s", name, strings.Join(k.names(), ", "))
}

// names lists the plural names the server knows, sorted.
func (k *kindMap) names() []string {
	out := make([]string, len(k.resources))
	for i, r := range k.resources {
		out[i] = r.Name
	}
	sort.Strings(out)
	return out
}

// objectPath is the API path of one object; dryRun adds ?dryRun=true.
func objectPath(r apiResource, ns, name string, dryRun bool) string {
	p := apiPrefix + "/namespaces/" + url.PathEscape(ns) + "/" + r.Name + "/" + url.PathEscape(name)
	if dryRun {
		p += "?dryRun=true"
	}
	return p
}

// violationPath is how the server's violations name an object sent in a
// request's body: its API path, unescaped.
func violationPath(r apiResource, ns, name string) string {
	return apiPrefix + "/namespaces/" + ns + "/" + r.Name + "/" + name
}

// listPath is the API path of a collection: in one namespace, or in all
// when ns is empty.
func listPath(r apiResource, ns string) string {
	if ns == "" {
		return apiPrefix + "/" + r.Name
	}
	return apiPrefix + "/namespaces/" + url.PathEscape(ns) + "/" + r.Name
}

// apiObject is the part of an object's JSON that the CLI reads.
type apiObject struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   objectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec,omitempty"`
	Status     objectStatus    `json:"status"`
}

// objectMeta is an object's metadata, server-managed fields included.
type objectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
}

// objectStatus is where an object comes from and what became of it.
type objectStatus struct {
	Source     string         `json:"source"`
	ReadOnly   bool           `json:"readOnly,omitempty"`
	Conditions []apiCondition `json:"conditions,omitempty"`
}

// apiCondition is one condition of an object, as the API writes it.
type apiCondition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
}

// refString is Kind/namespace/name, or Kind/name in the default
// namespace, like model.Ref.
func refString(kind, ns, name string) string {
	return model.Ref{Kind: kind, Namespace: ns, Name: name}.String()
}

// condition returns the status (True, False) of the condition of type
// typ, or "-" when the object has none.
func condition(conds []apiCondition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status
		}
	}
	return "-"
}

// sourceText is the SOURCE column: "api", or the file and line an object
// was read from.
func sourceText(source string) string {
	if source == "" {
		return "-"
	}
	return strings.TrimPrefix(source, "file:")
}

// age renders how long ago an RFC 3339 timestamp was, like kubectl: 42s,
// 5m, 3h, 2d; "-" when there is none (file objects).
func age(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if ts == "" || err != nil {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// printStructured writes v (a value, or JSON as json.RawMessage) as
// indented JSON or as YAML, for -o json and -o yaml.
func printStructured(w io.Writer, format string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if format == "yaml" {
		out, err := yaml.JSONToYAML(data)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// listOf wraps objects in a List, as kubectl prints several objects.
func listOf(items []json.RawMessage) map[string]any {
	if items == nil {
		items = []json.RawMessage{}
	}
	return map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
}

// printRefusal writes what went wrong with one object to w: the server's
// reason and message, then each violation on its own line as validate
// prints them. locate, if not nil, maps a violation back to the local
// file the object came from.
func printRefusal(w io.Writer, what string, err error, locate func(model.Violation) model.Violation) {
	var ae *apiError
	if !errors.As(err, &ae) {
		fmt.Fprintf(w, "error: %s: %v\n", what, err)
		return
	}
	fmt.Fprintf(w, "error: %s: %s: %s\n", what, ae.Reason, ae.Message)
	for _, v := range ae.Violations {
		if locate != nil {
			v = locate(v)
		}
		fmt.Fprintln(w, v.Error())
	}
}

// isNotFound reports whether err is the server's 404.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

// isInvalid reports whether err is the server's 422: the object (or what
// the change does to others) has violations.
func isInvalid(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusUnprocessableEntity
}

// isUnauthorized reports whether err is the server's 401: the
// credentials are wrong for every write, not just this one.
func isUnauthorized(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusUnauthorized
}

// unauthorizedHint follows a 401: what to fix before trying again.
const unauthorizedHint = "not trying the other objects: the server did not accept the credentials; " +
	"pass a token the server's --api-tokens lists (--token-file, --token or TOLLGATE_TOKEN) or a client certificate (--cert, --key)"

// alignRows pads the cells of rows into columns three spaces apart (like
// kubectl's tables) and returns one line per row, so that callers may put
// other lines between rows without breaking the alignment, which
// text/tabwriter would.
func alignRows(rows [][]string) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	lines := make([]string, len(rows))
	for j, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+3))
			}
		}
		lines[j] = b.String()
	}
	return lines
}
