package translate_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// requireAgree checks that same answers as reflect.DeepEqual, and that the
// answer is want.
func requireAgree(t *testing.T, a, b any, want bool, what string) {
	t.Helper()
	require.Equal(t, want, reflect.DeepEqual(a, b), "%s: reflect.DeepEqual", what)
	require.Equal(t, want, translate.Same(a, b), "%s: same", what)
	require.Equal(t, want, translate.Same(b, a), "%s: same, swapped", what)
}

type node struct {
	Name  string
	Next  *node
	Tags  []string
	Attrs map[string]any
	f     float64 // unexported fields count, as for reflect.DeepEqual
	Fn    func()
}

// TestSameIsDeepEqual: same, which TranslateIncremental uses to decide
// that a gateway's resolved configuration did not change, means what
// reflect.DeepEqual means, on crafted values (cycles, NaN, nil and empty,
// unexported fields, functions) and on every gateway of every golden input
// and example, built twice, compared with itself and with every other.
func TestSameIsDeepEqual(t *testing.T) {
	cyc := func(name string) *node {
		n := &node{Name: name}
		n.Next = &node{Name: "b", Next: n}
		return n
	}
	shared := []string{"x"}
	fn := func() {}
	for _, c := range []struct {
		what string
		a, b any
		want bool
	}{
		{"equal cycles", cyc("a"), cyc("a"), true},
		{"different cycles", cyc("a"), cyc("z"), false},
		{"nil and empty slice", &node{}, &node{Tags: []string{}}, false},
		{"shared slice", &node{Tags: shared}, &node{Tags: shared}, true},
		{"equal slices", &node{Tags: []string{"x"}}, &node{Tags: []string{"x"}}, true},
		{"longer slice", &node{Tags: []string{"x"}}, &node{Tags: []string{"x", "y"}}, false},
		{"maps", &node{Attrs: map[string]any{"a": 1, "b": []int{2}}}, &node{Attrs: map[string]any{"a": 1, "b": []int{2}}}, true},
		{"map values", &node{Attrs: map[string]any{"a": 1}}, &node{Attrs: map[string]any{"a": 2}}, false},
		{"map keys", &node{Attrs: map[string]any{"a": 1}}, &node{Attrs: map[string]any{"b": 1}}, false},
		{"interface types", &node{Attrs: map[string]any{"a": 1}}, &node{Attrs: map[string]any{"a": int64(1)}}, false},
		{"nil and empty map", &node{}, &node{Attrs: map[string]any{}}, false},
		{"unexported field", &node{f: 1}, &node{f: 2}, false},
		{"NaN", &node{f: math.NaN()}, &node{f: math.NaN()}, false},
		{"functions", &node{Fn: fn}, &node{Fn: fn}, false},
		{"nil functions", &node{}, &node{}, true},
		{"nil pointer", &node{}, (*node)(nil), false},
		{"types", &node{}, node{}, false},
		{"nil", nil, nil, true},
	} {
		requireAgree(t, c.a, c.b, c.want, c.what)
	}
	nan := &node{f: math.NaN()}
	requireAgree(t, nan, nan, true, "one NaN pointer") // identical pointers are equal, NaN or not

	checked := 0
	for _, dir := range goldenAndExampleConfigs(t) {
		a, b := dir.build(t), dir.build(t)
		for i, ga := range a.Gateways {
			requireAgree(t, ga, ga, true, dir.name+": itself")
			requireAgree(t, ga, b.Gateways[i], true, dir.name+": built again")
			for j, gb := range b.Gateways {
				if j != i {
					requireAgree(t, ga, gb, false, dir.name+": another gateway")
				}
			}
			checked++
		}
	}
	require.NotZero(t, checked)

	// Generated gateways differ in a few fields only.
	x := translatetest.BuildFiles(t, modeltest.GenerateGateways(2, 3, "600s"))
	y := translatetest.BuildFiles(t, append(modeltest.GenerateGateways(1, 3, "600s"), modeltest.GatewayFile(1, 3, "601s")))
	requireAgree(t, x.Gateways[0], y.Gateways[0], true, "generated, unchanged")
	requireAgree(t, x.Gateways[1], y.Gateways[1], false, "generated, one timeout changed")
}
