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
			if syntax.Flags(inst.Arg)&syntax.FoldCase != 0 {
				n *= 2
			}
			size += n - 1
		case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			size += utf8RangeCost(0, utf8.MaxRune) - 1
		}
	}
	return size, nil
}

// utf8RangeCost estimates the byte-range instructions RE2 needs for the
// runes lo..hi: per UTF-8 length the range touches, 1, 3, 6 and 9
// instructions for 1- to 4-byte sequences, a little more than a whole
// length costs RE2 with its shared suffixes (`.` is about 10 there).
func utf8RangeCost(lo, hi rune) int {
	bounds := []struct {
		min, max rune
		cost     int
	}{{0, 0x7f, 1}, {0x80, 0x7ff, 3}, {0x800, 0xffff, 6}, {0x10000, utf8.MaxRune, 9}}
	cost := 0
	for _, b := range bounds {
		if hi >= b.min && lo <= b.max {
			cost += b.cost
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
