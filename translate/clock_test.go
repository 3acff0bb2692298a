package translate_test

import "time"

// goldenNow is the clock of the golden cases: certificates and CRLs are
// judged at a fixed time, so that the goldens do not change as the test
// PKI ages (see testdata/in/certs/gen-validity.go for the dated test PKI).
func goldenNow() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }
