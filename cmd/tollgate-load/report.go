package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

type report struct {
	Scenario scenario `json:"scenario"`
	Machine  machine  `json:"machine"`
	// TargetMachine is where tollgate and the floor ran, when an agent
	// ran them (--agent); else they shared Machine with the clients.
	TargetMachine *machine       `json:"targetMachine,omitempty"`
	Targets       []targetReport `json:"targets"`
	// Ratio is tollgate's figures over the floor's, when both ran.
	Ratio *ratio `json:"ratio,omitempty"`
	// SameResources says whether tollgate and the floor served the same
	// resources: the versions (content hashes) one Envoy accepted agree,
	// before and after the edits.
	SameResources *bool `json:"sameResources,omitempty"`
}

type scenario struct {
	Envoys           int     `json:"envoys"`
	DeltaFraction    float64 `json:"deltaFraction"`
	Gateways         int     `json:"gateways"`
	RoutesPerGateway int     `json:"routesPerGateway"`
	Edits            int     `json:"edits"`
	EditGateways     int     `json:"editGateways"`
	Edit             string  `json:"edit"`
	PauseMs          float64 `json:"pauseMs"`
}

type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel,omitempty"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Go       string `json:"go"`
}

type targetReport struct {
	Target       string `json:"target"`
	DeltaStreams int    `json:"deltaStreams"`
	// ConnectSeconds is the time to connect the whole fleet, until every
	// Envoy holds its configuration.
	ConnectSeconds float64 `json:"connectSeconds"`
	// Samples is Envoys × edits; the percentiles are over all of them,
	// each the time from the edit to one Envoy's acceptance of it.
	Samples             int          `json:"samples"`
	P50Ms               float64      `json:"p50Ms"`
	P99Ms               float64      `json:"p99Ms"`
	MaxMs               float64      `json:"maxMs"`
	Edits               []editReport `json:"edits"`
	RSSPerStreamKiB     float64      `json:"rssPerStreamKiB"`
	HeapPerStreamKiB    float64      `json:"heapPerStreamKiB"`
	GoroutinesPerStream float64      `json:"goroutinesPerStream"`
	CPUConnectSeconds   float64      `json:"cpuConnectSeconds"`
	CPUPerEditSeconds   float64      `json:"cpuPerEditSeconds"`
	// ResponsesPerEnvoyPerEdit counts, by type, the responses the edits
	// caused, per Envoy of an edited gateway and edit.
	ResponsesPerEnvoyPerEdit map[string]float64 `json:"responsesPerEnvoyPerEdit"`
	// UneditedResponses counts the responses the Envoys of the gateways
	// the edits left alone received during the edits: none is right.
	UneditedResponses int               `json:"uneditedResponses"`
	Idle              processMetrics    `json:"idle"`
	Connected         processMetrics    `json:"connected"`
	After             processMetrics    `json:"after"`
	InitialVersions   map[string]string `json:"initialVersions"`
	FinalVersions     map[string]string `json:"finalVersions"`
}

// editReport is one edit: how long handing it over took (the PUTs, for API
// edits) and when the median and the last Envoy had it.
type editReport struct {
	HandoffMs float64 `json:"handoffMs"`
	P50Ms     float64 `json:"p50Ms"`
	MaxMs     float64 `json:"maxMs"`
}

type ratio struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// compare fills the ratio and the resources check when both targets ran.
func (r *report) compare() {
	var tg, fl *targetReport
	for i := range r.Targets {
		switch r.Targets[i].Target {
		case targetTollgate:
			tg = &r.Targets[i]
		case targetFloor:
			fl = &r.Targets[i]
		}
	}
	if tg == nil || fl == nil {
		return
	}
	r.Ratio = &ratio{P50: tg.P50Ms / fl.P50Ms, P99: tg.P99Ms / fl.P99Ms, Max: tg.MaxMs / fl.MaxMs}
	same := sameVersions(tg.InitialVersions, fl.InitialVersions) && sameVersions(tg.FinalVersions, fl.FinalVersions)
	r.SameResources = &same
}

func (r *report) write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	s := r.Scenario
	plural := "s"
	if s.Gateways == 1 {
		plural = ""
	}
	scope := ""
	if s.EditGateways > 0 && s.EditGateways < s.Gateways {
		scope = fmt.Sprintf(" of %d gateway%s", s.EditGateways, map[bool]string{true: "", false: "s"}[s.EditGateways == 1])
	}
	fmt.Fprintf(w, "%d Envoys (%.0f%% on Delta ADS), %d gateway%s × %d routes, %d edits%s by %s\n",
		s.Envoys, s.DeltaFraction*100, s.Gateways, plural, s.RoutesPerGateway, s.Edits, scope, s.Edit)
	m := r.Machine
	if t := r.TargetMachine; t != nil {
		fmt.Fprintf(w, "control plane (agent): %d CPUs %s, %s/%s, %s\n", t.CPUs, t.CPUModel, t.OS, t.Arch, t.Go)
		fmt.Fprintf(w, "clients: %d CPUs %s, %s/%s, %s\n\n", m.CPUs, m.CPUModel, m.OS, m.Arch, m.Go)
	} else {
		fmt.Fprintf(w, "machine: %d CPUs %s, %s/%s, %s; the control plane and the clients share it\n\n", m.CPUs, m.CPUModel, m.OS, m.Arch, m.Go)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tconnect\tp50\tp99\tmax\tRSS/stream\theap/stream\tCPU/edit\t")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fms\t%.1fms\t%.1fms\t%.1fKiB\t%.1fKiB\t%.0fms\t\n", t.Target, t.ConnectSeconds,
			t.P50Ms, t.P99Ms, t.MaxMs, t.RSSPerStreamKiB, t.HeapPerStreamKiB, t.CPUPerEditSeconds*1000)
	}
	if r.Ratio != nil {
		fmt.Fprintf(tw, "tollgate/floor\t\t%.2f×\t%.2f×\t%.2f×\t\t\t\t\n", r.Ratio.P50, r.Ratio.P99, r.Ratio.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.SameResources != nil {
		verdict := "yes: one Envoy accepted the same versions (content hashes) of every type from both, before and after the edits"
		if !*r.SameResources {
			verdict = "NO: the versions differ, so the comparison is not like for like"
		}
		fmt.Fprintf(w, "\nsame resources: %s\n", verdict)
	}
	fmt.Fprintln(w, "\nresponses per Envoy and edit:")
	for _, t := range r.Targets {
		types := slices.Sorted(maps.Keys(t.ResponsesPerEnvoyPerEdit))
		parts := make([]string, len(types))
		for i, typ := range types {
			parts[i] = fmt.Sprintf("%s %.2f", typ, t.ResponsesPerEnvoyPerEdit[typ])
		}
		unedited := ""
		if scope != "" {
			unedited = fmt.Sprintf("; the other gateways' Envoys: %d in all", t.UneditedResponses)
		}
		fmt.Fprintf(w, "  %-9s %s%s\n", t.Target, strings.Join(parts, ", "), unedited)
	}
	fmt.Fprintln(w, "\nper edit (handover, median, last Envoy):")
	for _, t := range r.Targets {
		parts := make([]string, len(t.Edits))
		for i, e := range t.Edits {
			parts[i] = fmt.Sprintf("%.0f/%.0f/%.0f", e.HandoffMs, e.P50Ms, e.MaxMs)
		}
		fmt.Fprintf(w, "  %-9s %s ms\n", t.Target, strings.Join(parts, " "))
	}
	return nil
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for line := range strings.SplitSeq(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return "(" + strings.TrimSpace(v) + ")"
		}
	}
	return ""
}
