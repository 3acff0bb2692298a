package translate

import (
	"reflect"
	"unsafe"
)

// same reports whether a and b are deeply equal, with the meaning of
// reflect.DeepEqual, for the resolved configurations TranslateIncremental
// compares. It differs in cost only: it takes an identical pointer, slice
// or map as equal before recording anything, where reflect.DeepEqual
// records every one it meets in its cycle map first. An edit's new
// configuration shares the model objects and most slices of every
// unchanged file with the previous one, so that map held hundreds of
// thousands of entries per edit at 10,000 routes, for pointers that were
// equal to themselves. Only pairs of distinct pointers are remembered
// (they guard cycles, and let a backend referenced by many rules be
// compared once).
func same(a, b any) bool {
	if a == nil || b == nil {
		return a == b
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() != vb.Type() {
		return false
	}
	return (&sameState{}).equal(va, vb)
}

type samePair struct {
	a, b unsafe.Pointer
	t    reflect.Type
}

type sameState struct {
	seen map[samePair]bool
}

// remember reports whether the pair is already being (or was) compared,
// and records it otherwise.
func (s *sameState) remember(a, b unsafe.Pointer, t reflect.Type) bool {
	if uintptr(a) > uintptr(b) {
		a, b = b, a
	}
	k := samePair{a, b, t}
	if s.seen[k] {
		return true
	}
	if s.seen == nil {
		s.seen = map[samePair]bool{}
	}
	s.seen[k] = true
	return false
}

func (s *sameState) equal(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		if a.IsNil() || b.IsNil() {
			return false
		}
		if s.remember(a.UnsafePointer(), b.UnsafePointer(), a.Type()) {
			return true
		}
		return s.equal(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		if a.Len() == 0 || a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		for i := range a.Len() {
			if !s.equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !s.equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		if a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		if s.remember(a.UnsafePointer(), b.UnsafePointer(), a.Type()) {
			return true
		}
		it := a.MapRange()
		for it.Next() {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !s.equal(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return s.equal(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !s.equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Func:
		return a.IsNil() && b.IsNil() // as reflect.DeepEqual: functions are equal only if both nil
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Chan, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	default:
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}
