package model

import (
	"testing"
)

// FuzzDecode checks that no input makes Decode or BuildConfig panic, and that
// every violation says where it is and what is wrong.
//
//	go test ./model -run XXX -fuzz FuzzDecode -fuzztime 30s
func FuzzDecode(f *testing.F) {
	seeds := []string{
		validPolicy,
		"",
		"---\n",
		"---\n---\n",
		"~\n",
		"- a\n- b\n",
		"just a string\n",
		"a: [\n",
		"a: *nope\n",
		"\tkind: Gateway\n",
		"apiVersion: tollgate.dev/v1alpha1\nkind: Gatway\nmetadata: {name: x}\n",
		"apiVersion: v1\nmetadata: {name: x}\n",
		gatewayDoc("  listeners: [{name: http, port: \"80\", protocol: HTTP, tls: true}]\n"),
		gatewayDoc("  listeners:\n  - &l {name: http, port: 80, protocol: HTTP}\n  - *l\n  - {name: b, port: -1, protocol: HTTP, port: 4294967296}\n"),
		backendDoc("  provider: bedrock\n  region: us-east-1\n  addresses: [{ip: 10.0.0.1, port: 70000}]\n  tls: !!bool yes\n"),
		backendDoc("  hostname: !!int x\n  port: !!str 80\n  <<: {provider: openai}\n"),
		routeDoc("  parentRefs: [{name: gw, sectionName: http}]\n  rules:\n  - matches: &m [{path: {type: RegularExpression, value: \"(\"}, headers: [{name: \":a\"}], method: FETCH}]\n    backendRefs: [{name: be, weight: 0}]\n    timeouts: {request: -1s}\n  - matches: *m\n    backendRefs: [{name: be}, {name: be}]\n"),
		"apiVersion: &v tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: b, labels: {k: *v, ? [x] : y}}\nspec: {provider: openai}\n",
		"apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: &m {name: b, annotations: *m}\nspec: {provider: openai}\n",
	}
	for _, files := range []map[string]string{configFiles} {
		for _, data := range files {
			seeds = append(seeds, data)
		}
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, vs := NewScheme().Decode("fuzz.yaml", data)
		checkViolations(t, "Decode", vs)
		for _, o := range objs {
			if RefOf(o).Name == "" {
				t.Fatalf("Decode returned %T without a name", o)
			}
			if o.GetSource().File != "fuzz.yaml" || o.GetSource().Line <= 0 {
				t.Fatalf("Decode returned %s with source %+v", RefOf(o), *o.GetSource())
			}
		}
		// Resolve whatever decoded, as the CLI does with the good objects of
		// a directory that has bad ones too.
		cfg, bvs := BuildConfig(objs, Settings{})
		checkViolations(t, "BuildConfig", bvs)
		if len(bvs) == 0 && cfg == nil {
			t.Fatal("BuildConfig returned neither a config nor violations")
		}
		if len(bvs) > 0 && cfg != nil {
			t.Fatal("BuildConfig returned both a config and violations")
		}
	})
}

func checkViolations(t *testing.T, what string, vs Violations) {
	t.Helper()
	for _, v := range vs {
		if v.Msg == "" || v.File == "" {
			t.Fatalf("%s returned a violation without file or message: %#v", what, v)
		}
		if v.Line < 0 {
			t.Fatalf("%s returned a violation with a negative line: %#v", what, v)
		}
	}
}
