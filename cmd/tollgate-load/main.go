// Command tollgate-load measures how fast a fleet of Envoys converges on a
// policy edit, and what the fleet costs tollgate.
//
// It starts tollgate (the real binary, in a process of its own) on a
// generated policy set, opens N ADS streams that behave like Envoys (State
// of the World and Delta, following RDS, EDS and SDS and ACKing every
// response), then edits the policies E times, by a file saved atomically,
// a file rewritten in place, or a PUT through the HTTP API, and times each
// stream from the edit to its ACK of the new route configuration. It
// scrapes tollgate's /metrics before and after for resident memory, heap
// and CPU.
//
// It then runs the same scenario against the floor: a bare go-control-plane
// server (snapshot cache and ADS server, nothing of tollgate's) in another
// process, serving the very resources tollgate serves (the tool checks
// their versions, which are content hashes, are the same), with each
// edit's snapshot computed in advance. The ratio of the two is the part of
// convergence that is tollgate's own: watching, decoding, translating,
// checking and publishing.
//
// With --agent, both targets run under "tollgate-load agent" on another
// machine (agent.go), and this process runs only the Envoys.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-load:", err)
		os.Exit(1)
	}
}
