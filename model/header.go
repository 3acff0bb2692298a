package model

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderBytes is the longest header name or value Envoy accepts in its
// configuration (config.core.v3.HeaderValue key and value, max_bytes).
const MaxHeaderBytes = 16384

// HeaderValueProblem says why Envoy would refuse s as a header value, or
// would send something other than what was written, or "" when s is fine.
// Control characters (CR and LF above all) would split the header or be
// refused; only a horizontal tab is allowed, as in HTTP itself.
func HeaderValueProblem(s string) string {
	if len(s) > MaxHeaderBytes {
		return "is " + strconv.Itoa(len(s)) + " bytes long: Envoy accepts at most " + strconv.Itoa(MaxHeaderBytes) + " bytes in a header value"
	}
	if !utf8.ValidString(s) {
		return quoteShort(s) + " is not valid UTF-8"
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }); i >= 0 {
		return quoteShort(s) + " contains a control character (CR, LF, NUL or similar): a header value is one line of printable text"
	}
	return ""
}

// HeaderNameProblem is HeaderValueProblem for a header name: a non-empty
// HTTP token (letters, digits and !#$%&'*+-.^_`|~), at most MaxHeaderBytes.
func HeaderNameProblem(s string) string {
	if len(s) > MaxHeaderBytes {
		return "is " + strconv.Itoa(len(s)) + " bytes long: Envoy accepts at most " + strconv.Itoa(MaxHeaderBytes) + " bytes in a header name"
	}
	if !ValidHeaderName(s) {
		return quoteShort(s) + " is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~"
	}
	return ""
}

// quoteShort quotes s for a message, cut to a readable length: a
// 70 KB value helps nobody in a terminal.
func quoteShort(s string) string {
	const max = 80
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
