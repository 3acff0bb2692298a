package model

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes, written as a plain integer or with a
// binary suffix: "512Ki", "32Mi", "1Gi".
type ByteSize struct{ Bytes uint64 }

var byteSuffixes = []struct {
	suffix string
	factor uint64
}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}}

// DecodeScalar implements the decoder's scalar hook.
func (b *ByteSize) DecodeScalar(s string) error {
	num, factor := s, uint64(1)
	for _, bs := range byteSuffixes {
		if strings.HasSuffix(s, bs.suffix) {
			num, factor = strings.TrimSuffix(s, bs.suffix), bs.factor
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (1<<63)/factor {
		return fmt.Errorf("%q is not a size: write bytes as a whole number, or with Ki, Mi or Gi (\"32Mi\")", s)
	}
	b.Bytes = n * factor
	return nil
}

// Ptr returns the size in bytes, nil when b is nil (unset).
func (b *ByteSize) Ptr() *uint64 {
	if b == nil {
		return nil
	}
	x := b.Bytes
	return &x
}

// String writes the size as it would be written in a policy.
func (b ByteSize) String() string {
	for i := len(byteSuffixes) - 1; i >= 0; i-- {
		if f := byteSuffixes[i].factor; b.Bytes >= f && b.Bytes%f == 0 {
			return strconv.FormatUint(b.Bytes/f, 10) + byteSuffixes[i].suffix
		}
	}
	return strconv.FormatUint(b.Bytes, 10)
}

// Bounds of GuardRailsPolicy backoff.bufferLimit. Below Envoy's flow
// control chunk (16Ki) a limit means nothing; above 1Gi one request could
// exhaust an Envoy.
const (
	MinRetryBufferLimit = 16 << 10
	MaxRetryBufferLimit = 1 << 30
)
