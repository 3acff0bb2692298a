package model

import (
	"fmt"
	"regexp/syntax"
	"unicode/utf8"
)

// MaxRegexProgramSize is Envoy's default limit on a regex's RE2 program
// size (runtime key re2.max_program_size.error_level); Envoy refuses a
// bigger regex, and with it the whole route configuration.
const MaxRegexProgramSize = 100

// RegexProgramSize estimates RE2's program size for re (RE2::ProgramSize,
// what Envoy compares with its limit). Go's regexp/syntax compiler is a
// port of RE2's and emits nearly the same instructions, with three
// differences that this estimate corrects for, each erring on the large
// side: RE2 adds a two-instruction ".*?" loop for unanchored starts (Go a
// capture pair, counted as is), and RE2 compiles character classes into
// UTF-8 byte ranges where Go keeps one rune instruction, so each non-ASCII
// range is charged a little more than RE2's shared byte sequences cost.
// On `^/v1/[a-z]{1,200}$` it gives 409 where RE2 says 403. It is an
// estimate, checked on a few regexes only: near the limit it may refuse
// a regex RE2 would just accept, and it is meant never to accept one RE2
// refuses.
func RegexProgramSize(re string) (int, error) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return 0, err
	}
	size := len(prog.Inst) + 2
	for _, inst := range prog.Inst {
		switch inst.Op {
		case syntax.InstRune, syntax.InstRune1:
			ranges := inst.Rune
			if len(ranges) == 1 {
				ranges = []rune{ranges[0], ranges[0]}
			}
			n := 0
			for i := 0; i+1 < len(ranges); i += 2 {
				n += utf8RangeCost(ranges[i], ranges[i+1])
			}
			// RE2 folds ASCII case within one instruction ((?i)abc costs
			// what abc does), except s and k, which also match ſ
			// (U+017F, 3 more) and the Kelvin sign (U+212A, 4 more);
			// other scripts' case pairs are ranges of their own.
			if syntax.Flags(inst.Arg)&syntax.FoldCase != 0 {
				if ranges[len(ranges)-1] > 0x7f {
					n *= 2
				} else {
					for i := 0; i+1 < len(ranges); i += 2 {
						if inRange(ranges[i], ranges[i+1], 's', 'S') {
							n += 3
						}
						if inRange(ranges[i], ranges[i+1], 'k', 'K') {
							n += 4
						}
					}
				}
			}
			size += n - 1
		case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			size += utf8RangeCost(0, utf8.MaxRune) - 1
		}
	}
	return size, nil
}

// utf8RangeCost estimates the byte-range instructions RE2 needs for the
// runes lo..hi, measured against RE2::ProgramSize: 1 for the ASCII part;
// for the multi-byte part 7 when it is all of U+0080..U+10FFFF (RE2
// shares the continuation bytes), else per UTF-8 length it touches 3, 6
// and 9 instructions when it covers the whole length and 4, 12 and 16
// when it covers part of it (partial ranges split into several byte
// sequences: [一-龥] takes 9).
func utf8RangeCost(lo, hi rune) int {
	cost := 0
	if lo <= 0x7f {
		cost++
	}
	if hi < 0x80 {
		return cost
	}
	if lo <= 0x80 && hi >= utf8.MaxRune {
		return cost + 7
	}
	bounds := []struct {
		min, max      rune
		full, partial int
	}{{0x80, 0x7ff, 3, 4}, {0x800, 0xffff, 6, 12}, {0x10000, utf8.MaxRune, 9, 16}}
	for _, b := range bounds {
		switch {
		case hi < b.min || lo > b.max:
		case lo <= b.min && hi >= b.max:
			cost += b.full
		default:
			cost += b.partial
		}
	}
	return cost
}

// regexProblem says why Envoy would refuse re, or "".
func regexProblem(re string) string {
	size, err := RegexProgramSize(re)
	if err != nil {
		return fmt.Sprintf("%q is not an RE2 regular expression: %v", re, err)
	}
	if size > MaxRegexProgramSize {
		return fmt.Sprintf("%q compiles to an RE2 program of about %d instructions, more than Envoy's limit of %d: simplify it (a bounded repeat such as {1,200} counts once per repetition)", re, size, MaxRegexProgramSize)
	}
	return ""
}

// inRange reports whether lo..hi holds either rune.
func inRange(lo, hi, a, b rune) bool {
	return (lo <= a && a <= hi) || (lo <= b && b <= hi)
}
