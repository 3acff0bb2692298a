package translate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// toAny packs m deterministically, so that the bytes inside every Any are
// stable and content-hash versions stay stable.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %T: %w", m, err)
	}
	return a, nil
}

// mustAny packs messages that are built from constants only, where a
// failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := toAny(m)
	if err != nil {
		panic(err)
	}
	return a
}
