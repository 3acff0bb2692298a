package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// run measures every target of o, one after the other, and writes the
// report to w.
func run(ctx context.Context, o options, w io.Writer) error {
	rep := report{Scenario: scenarioOf(o), Machine: machineOf()}
	if o.agent != "" {
		// The agent writes the scenario on its machine.
		return measureAll(ctx, o, "", &rep, w)
	}
	work := o.workDir
	if work == "" {
		tmp, err := os.MkdirTemp("", "tollgate-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		work = tmp
	}
	// A previous run's API store would hold its edited routes.
	for _, stale := range []string{"policies", "state"} {
		if err := os.RemoveAll(filepath.Join(work, stale)); err != nil {
			return err
		}
	}
	if err := writeScenario(filepath.Join(work, "policies"), o); err != nil {
		return err
	}
	return measureAll(ctx, o, work, &rep, w)
}

// measureAll measures every target of o into rep and writes it to w.
func measureAll(ctx context.Context, o options, work string, rep *report, w io.Writer) error {
	for _, name := range o.targets {
		tr, err := measure(ctx, o, work, name, rep)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep.Targets = append(rep.Targets, tr)
	}
	rep.compare()
	return rep.write(w, o.output)
}

// measure runs the scenario against one target.
func measure(ctx context.Context, o options, work, name string, rep *report) (targetReport, error) {
	tr := targetReport{Target: name}
	var (
		t   target
		err error
	)
	switch {
	case o.agent != "":
		var m machine
		if t, m, err = startRemote(ctx, o, name); err == nil {
			rep.TargetMachine = &m
		}
	case name == targetTollgate:
		t, err = startTollgate(ctx, o, work)
	default:
		t, err = startFloor(ctx, o, work)
	}
	if err != nil {
		return tr, err
	}
	defer t.stop()
	if tr.Idle, err = t.metrics(ctx); err != nil {
		return tr, err
	}

	// Envoy i belongs to gateway i % gateways (fleet.connect).
	f := newFleet(o.envoys, o.edits, func(i int) bool { return i%o.gateways < o.editGateways })
	defer f.close()
	start := time.Now()
	if err := f.connect(ctx, t.xdsAddr(), o); err != nil {
		return tr, fmt.Errorf("connecting %d Envoys: %w", o.envoys, err)
	}
	tr.ConnectSeconds = time.Since(start).Seconds()
	tr.DeltaStreams = f.delta
	tr.InitialVersions = f.versions(0)
	// Let the connection burst's garbage be collected before reading the
	// memory the fleet holds.
	time.Sleep(2 * time.Second)
	if tr.Connected, err = t.metrics(ctx); err != nil {
		return tr, err
	}

	before, beforeUnedited := f.responses(true), f.responses(false)
	var all []time.Duration
	for k := 1; k <= o.edits; k++ {
		start := time.Now()
		if err := t.edit(ctx, k); err != nil {
			return tr, fmt.Errorf("edit %d: %w", k, err)
		}
		handoff := time.Since(start)
		if err := f.wait(ctx, k, o.timeout); err != nil {
			return tr, fmt.Errorf("edit %d: %w", k, err)
		}
		lat := f.latencies(k, start)
		all = append(all, lat...)
		tr.Edits = append(tr.Edits, editReport{
			HandoffMs: ms(handoff),
			P50Ms:     ms(percentile(lat, 0.50)),
			MaxMs:     ms(slices.Max(lat)),
		})
		time.Sleep(o.pause)
	}
	if tr.After, err = t.metrics(ctx); err != nil {
		return tr, err
	}
	tr.FinalVersions = f.versions(0)
	// What the edits cost in responses: each should send every Envoy of
	// an edited gateway one route configuration and nothing else, and the
	// other Envoys nothing.
	edited := f.editedCount()
	tr.ResponsesPerEnvoyPerEdit = map[string]float64{}
	for typ, n := range f.responses(true) {
		if d := n - before[typ]; d > 0 {
			tr.ResponsesPerEnvoyPerEdit[typ] = float64(d) / float64(edited*o.edits)
		}
	}
	for typ, n := range f.responses(false) {
		tr.UneditedResponses += n - beforeUnedited[typ]
	}
	tr.Samples = len(all)
	tr.P50Ms = ms(percentile(all, 0.50))
	tr.P99Ms = ms(percentile(all, 0.99))
	tr.MaxMs = ms(slices.Max(all))
	n := float64(o.envoys)
	tr.RSSPerStreamKiB = (tr.Connected.RSSBytes - tr.Idle.RSSBytes) / n / 1024
	tr.HeapPerStreamKiB = (tr.Connected.HeapBytes - tr.Idle.HeapBytes) / n / 1024
	tr.GoroutinesPerStream = (tr.Connected.Goroutines - tr.Idle.Goroutines) / n
	tr.CPUConnectSeconds = tr.Connected.CPUSeconds - tr.Idle.CPUSeconds
	tr.CPUPerEditSeconds = (tr.After.CPUSeconds - tr.Connected.CPUSeconds) / float64(o.edits)
	return tr, nil
}

// percentile is the nearest-rank q-quantile of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func scenarioOf(o options) scenario {
	return scenario{
		Envoys: o.envoys, DeltaFraction: o.delta, Gateways: o.gateways, RoutesPerGateway: o.routes,
		Edits: o.edits, EditGateways: o.editGateways, Edit: o.edit, PauseMs: ms(o.pause),
	}
}

func machineOf() machine {
	m := machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	return m
}

// sameVersions reports whether two version maps agree on every type.
func sameVersions(a, b map[string]string) bool {
	return len(a) > 0 && maps.Equal(a, b)
}
