package translate_test

import (
	"math/rand/v2"
	"testing"
)

// counter is one envoyproxy/ratelimit counter within a window: a request
// adds its hits, then is over the limit when the sum is
// (fixedRateLimitCacheImpl.DoLimit in its src/redis/fixed_cache_impl.go
// increments before comparing, so refused requests count too).
type counter struct{ n, limit uint64 }

func (c *counter) add(hits uint64) (admitted bool) {
	c.n += hits
	return c.n <= c.limit
}

type inflight struct{ input, output, maxOutput uint64 }

// TestTokenBudgetArithmetic drives the accounting ratelimit.go emits
// (output and total reserve max output tokens at admission; input and
// total are charged the reported input at stream end; input is checked
// with 0 hits at admission) through random concurrent schedules, and
// checks the bounds the README states:
//
//   - output: what admitted requests generate never passes the budget,
//     when each generates at most the maximum it asked for;
//   - input: what admitted requests send passes the budget by at most the
//     input of the requests in flight when it was crossed, i.e. at most
//     C × the largest input, C the concurrency on the counter;
//   - total: the same bound as input (its output part is reserved).
func TestTokenBudgetArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 2000; run++ {
		limit := uint64(1000 + rng.IntN(20000))
		maxConc := 1 + rng.IntN(32)
		maxInput := uint64(1 + rng.IntN(4000))
		in, out, total := &counter{limit: limit}, &counter{limit: limit}, &counter{limit: limit}
		var flying []inflight
		var gotIn, gotOut, gotTotal uint64 // what admitted requests used
		for step := 0; step < 400; step++ {
			if len(flying) < maxConc && rng.IntN(2) == 0 {
				r := inflight{input: 1 + uint64(rng.Int64N(int64(maxInput))), maxOutput: 1 + uint64(rng.IntN(2000))}
				r.output = uint64(rng.Int64N(int64(r.maxOutput) + 1)) // a provider stops at max_tokens
				okIn := in.add(0)
				okOut := out.add(r.maxOutput)
				okTotal := total.add(r.maxOutput)
				if okIn && okOut && okTotal {
					flying = append(flying, r)
				}
				continue
			}
			if len(flying) == 0 {
				continue
			}
			i := rng.IntN(len(flying))
			r := flying[i]
			flying = append(flying[:i], flying[i+1:]...)
			// Stream end: the reported input is charged; a rejected
			// charge still counts (fire and forget).
			in.add(r.input)
			total.add(r.input)
			gotIn += r.input
			gotOut += r.output
			gotTotal += r.input + r.output
		}
		for _, r := range flying { // streams that end after the window
			gotIn += r.input
			gotOut += r.output
			gotTotal += r.input + r.output
		}
		bound := uint64(maxConc) * maxInput
		if gotOut > limit {
			t.Fatalf("run %d: admitted requests generated %d output tokens, budget %d", run, gotOut, limit)
		}
		if gotIn > limit+bound {
			t.Fatalf("run %d: admitted requests sent %d input tokens, budget %d + C×max input %d", run, gotIn, limit, bound)
		}
		if gotTotal > limit+bound {
			t.Fatalf("run %d: admitted requests used %d tokens, budget %d + C×max input %d", run, gotTotal, limit, bound)
		}
	}
}
