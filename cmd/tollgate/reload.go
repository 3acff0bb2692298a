package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tollgate-dev/tollgate/model"
)

// notifyHUP starts catching SIGHUP, for reloadOn: `systemctl reload
// tollgate`, for when a change was not seen (a file system without
// inotify, such as NFS, or a file a policy names that changed behind a
// mount). It is called before tollgate says it serves, so that a SIGHUP
// sent once it does is never lost nor fatal; before (start-up) and after
// stop (shutdown) SIGHUP keeps its default action.
func notifyHUP() (hup <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// reloadOn calls reload (a Sync of the policy directory) on every signal
// from sig (notifyHUP's) until ctx ends. Signals that arrive during a
// reload are folded into one more reload (sig is buffered by one), so a
// burst of SIGHUPs costs at most two.
func reloadOn(ctx context.Context, sig <-chan os.Signal, reload func() error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sig:
			log.Info("reloading the policy directory", "signal", s.String())
			began := time.Now()
			err := reload()
			if err == nil {
				log.Info("policies reloaded", "signal", s.String(), "took", time.Since(began).Round(time.Millisecond))
				continue
			}
			if vs, ok := model.AsViolations(err); ok {
				log.Error("reload refused: policies rejected; still serving the last good config", "signal", s.String(), "violations", len(vs))
				for _, v := range vs {
					log.Error(v.Error())
				}
				continue
			}
			log.Error("reload refused; still serving the last good config", "signal", s.String(), "err", err)
		}
	}
}
