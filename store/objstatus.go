package store

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
)

// The condition types every object carries.
const (
	ConditionAccepted     = "Accepted"
	ConditionResolvedRefs = "ResolvedRefs"
	ConditionProgrammed   = "Programmed"
)

// Reasons the store sets itself.
const (
	ReasonAccepted         = "Accepted"
	ReasonResolvedRefs     = "ResolvedRefs"
	ReasonInvalid          = "Invalid"
	ReasonInvalidReference = "InvalidReference"
	ReasonNotServedYet     = "NotServedYet"
)

// genEntry is the generation the store counts for an object that carries
// none (file objects): it grows when the object's content, metadata aside,
// changes while this process runs.
type genEntry struct {
	obj  model.Object // the decoded object last seen: unchanged files keep theirs
	hash [sha256.Size]byte
	gen  int64
	pass uint64 // the countGenerations pass that last saw the object
}

// countGenerations updates the generations after an accepted change. The
// caller holds s.mu. It runs on every change: an unchanged object (the
// same decoded object as last time) costs a map lookup, and nothing is
// allocated for it.
func (s *Store) countGenerations(cfg *model.Config) {
	if s.gens == nil {
		s.gens = map[model.Ref]*genEntry{}
	}
	s.genPass++
	pass := s.genPass
	for _, o := range cfg.Objects {
		ref := model.RefOf(o)
		e := s.gens[ref]
		if g := o.GetMeta().Generation; g > 0 {
			if e != nil && e.obj == o {
				e.pass = pass
				continue
			}
			s.gens[ref] = &genEntry{obj: o, gen: g, pass: pass}
			continue
		}
		if e != nil && e.obj == o {
			e.pass = pass
			continue // the file did not change: its decode was reused
		}
		h := contentHash(o)
		switch {
		case e == nil:
			s.gens[ref] = &genEntry{obj: o, hash: h, gen: 1, pass: pass}
		case e.hash != h:
			s.gens[ref] = &genEntry{obj: o, hash: h, gen: e.gen + 1, pass: pass}
		default:
			e.obj, e.pass = o, pass
		}
	}
	for ref, e := range s.gens {
		if e.pass != pass {
			delete(s.gens, ref)
		}
	}
}

// contentHash digests an object's content other than its metadata and
// source position: what a generation counts.
func contentHash(o model.Object) [sha256.Size]byte {
	data, err := json.Marshal(o)
	if err != nil {
		return sha256.Sum256([]byte(fmt.Sprintf("%#v", o)))
	}
	var m map[string]any
	if json.Unmarshal(data, &m) == nil {
		delete(m, "Src")
		delete(m, "Metadata")
		data, _ = json.Marshal(m)
	}
	return sha256.Sum256(data)
}

// Generation is the generation of the object served under ref, or 0.
func (s *Store) Generation(ref model.Ref) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.gens[ref]; e != nil {
		return e.gen
	}
	return 0
}

// Located is one object as a source holds it.
type Located struct {
	Source string
	Object model.Object
}

// Lookup lists the objects the sources hold under ref, served or not: the
// file's and the API's copy when both define it.
func (s *Store) Lookup(ref model.Ref) []Located {
	txn := s.db.Txn(false)
	defer txn.Abort()
	it, err := txn.Get(tableObjects, "ref", ref.String())
	if err != nil {
		return nil
	}
	var out []Located
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*entry)
		out = append(out, Located{Source: e.Source, Object: e.Object})
	}
	return out
}

// ObjectStatus is one object's status: where it comes from, its
// generation and its conditions.
type ObjectStatus struct {
	Object    string `json:"object"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Source is "api", or the file and line that define the object.
	Source string `json:"source"`
	// ReadOnly is set for file objects: the API cannot change them.
	ReadOnly   bool              `json:"readOnly,omitempty"`
	Generation int64             `json:"generation"`
	Conditions []ObjectCondition `json:"conditions"`
}

// ObjectCondition is a condition as the API shows it.
type ObjectCondition struct {
	Type               string `json:"type"`
	Status             string `json:"status"` // "True" or "False"
	Reason             string `json:"reason"`
	Message            string `json:"message"`
	ObservedGeneration int64  `json:"observedGeneration"`
}

// SourceOf renders where an object comes from.
func SourceOf(source string, o model.Object) string {
	if source == APISourceName {
		return "api"
	}
	src := o.GetSource()
	if src.Line > 0 {
		return fmt.Sprintf("file:%s:%d", src.File, src.Line)
	}
	return "file:" + src.File
}

// ObjectStatuses reports every object of the served configuration, and
// every object the latest refused change has violations for, with the
// conditions Accepted, ResolvedRefs and Programmed (and any other the
// policies, the xDS server or extra set): conds are the conditions of the
// other parts (the xDS server's Programmed, NACKs, Envoy versions). Where
// several conditions of one type apply, a False one wins: one problem is
// enough to answer "why is it not applied".
func (s *Store) ObjectStatuses(conds []model.Condition) []ObjectStatus {
	s.mu.Lock()
	cfg, lastErr := s.current, s.lastErr
	gens := make(map[model.Ref]int64, len(s.gens))
	for ref, e := range s.gens {
		gens[ref] = e.gen
	}
	s.mu.Unlock()

	byObject := map[string][]model.Condition{}
	add := func(c model.Condition) { byObject[c.Object] = append(byObject[c.Object], c) }
	if cfg != nil {
		for _, c := range cfg.Conditions {
			add(c)
		}
	}
	for _, c := range conds {
		add(c)
	}
	var violations model.Violations
	if lastErr != nil {
		violations, _ = model.AsViolations(lastErr)
	}
	byViolation := map[string]model.Violations{}
	for _, v := range violations {
		if v.Object != "" {
			byViolation[v.Object] = append(byViolation[v.Object], v)
		}
	}

	var out []ObjectStatus
	listed := map[string]bool{}
	if cfg != nil {
		for _, o := range cfg.Objects {
			ref := model.RefOf(o)
			source := APISourceName
			if o.GetMeta().Generation == 0 {
				source = "file"
			}
			st := ObjectStatus{
				Object: ref.String(), Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name,
				Source: SourceOf(source, o), ReadOnly: source != APISourceName, Generation: gens[ref],
			}
			st.Conditions = conditionsOf(byObject[st.Object], byViolation[st.Object], st.Generation, true)
			out = append(out, st)
			listed[st.Object] = true
		}
	}
	// Objects only the refused change has: not served at all.
	for obj, vs := range byViolation {
		if listed[obj] {
			continue
		}
		st := ObjectStatus{Object: obj, Source: "file:" + vs[0].File, ReadOnly: true}
		if vs[0].Line > 0 {
			st.Source = fmt.Sprintf("file:%s:%d", vs[0].File, vs[0].Line)
		}
		if strings.HasPrefix(vs[0].File, apiPathPrefix) {
			st.Source, st.ReadOnly = "api", false
		}
		st.Kind, st.Namespace, st.Name = splitObject(obj)
		st.Conditions = conditionsOf(byObject[obj], vs, 0, false)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
}

// splitObject parses a model.Ref.String().
func splitObject(s string) (kind, namespace, name string) {
	parts := strings.Split(s, "/")
	switch len(parts) {
	case 2:
		return parts[0], model.DefaultNamespace, parts[1]
	case 3:
		return parts[0], parts[1], parts[2]
	}
	return "", "", s
}

// conditionsOf merges an object's conditions into the three every object
// carries, then the others in type order.
func conditionsOf(conds []model.Condition, violations model.Violations, gen int64, served bool) []ObjectCondition {
	picked := map[string]*model.Condition{}
	var types []string
	for i := range conds {
		c := &conds[i]
		cur, ok := picked[c.Type]
		if !ok {
			types = append(types, c.Type)
		}
		if !ok || (cur.Status && !c.Status) {
			picked[c.Type] = c
		}
	}
	if len(violations) > 0 {
		msgs := make([]string, 0, len(violations))
		var refs []string
		for _, v := range violations {
			m := v.Msg
			if v.Field != "" {
				m = v.Field + ": " + m
			}
			msgs = append(msgs, m)
			if strings.Contains(v.Field, "Ref") {
				refs = append(refs, m)
			}
		}
		tail := "; it is not served: fix it (or what it refers to) and save again"
		if served {
			tail = "; the configuration before that change is still served: fix it (or what it refers to) and save again"
		}
		if _, ok := picked[ConditionAccepted]; !ok {
			types = append(types, ConditionAccepted)
		}
		picked[ConditionAccepted] = &model.Condition{Type: ConditionAccepted, Reason: ReasonInvalid,
			Message: "the latest change of the policies is refused because of it: " + strings.Join(msgs, "; ") + tail}
		if len(refs) > 0 {
			if _, ok := picked[ConditionResolvedRefs]; !ok {
				types = append(types, ConditionResolvedRefs)
			}
			picked[ConditionResolvedRefs] = &model.Condition{Type: ConditionResolvedRefs, Reason: ReasonInvalidReference, Message: strings.Join(refs, "; ")}
		}
	}
	defaults := []model.Condition{
		{Type: ConditionAccepted, Status: true, Reason: ReasonAccepted, Message: "valid, and part of the configuration tollgate serves"},
		{Type: ConditionResolvedRefs, Status: true, Reason: ReasonResolvedRefs, Message: "every object it refers to exists"},
		{Type: ConditionProgrammed, Reason: ReasonNotServedYet, Message: "no Envoy has been sent a configuration with it yet"},
	}
	if !served {
		defaults[2].Message = "not served: the change that adds it is refused"
	}
	out := make([]ObjectCondition, 0, len(types)+3)
	for _, d := range defaults {
		c, ok := picked[d.Type]
		if !ok {
			c = &d
		}
		out = append(out, objectCondition(*c, gen))
	}
	sort.Strings(types)
	for _, t := range types {
		if t == ConditionAccepted || t == ConditionResolvedRefs || t == ConditionProgrammed {
			continue
		}
		out = append(out, objectCondition(*picked[t], gen))
	}
	return out
}

func objectCondition(c model.Condition, gen int64) ObjectCondition {
	st := "False"
	if c.Status {
		st = "True"
	}
	return ObjectCondition{Type: c.Type, Status: st, Reason: c.Reason, Message: c.Message, ObservedGeneration: gen}
}
