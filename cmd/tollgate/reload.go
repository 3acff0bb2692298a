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

// reloadOnHUP calls reload (a Sync of the policy directory) on every
// SIGHUP until ctx ends: `systemctl reload tollgate` for when a change was
// not seen (a file system without inotify, such as NFS, or a file a policy
// names that changed behind a mount). SIGHUP stops being fatal while it
// runs; before and after (start-up, shutdown) it keeps its default action.
func reloadOnHUP(ctx context.Context, reload func() error, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloadOn(ctx, hup, reload, log)
}

// reloadOn is reloadOnHUP's loop, reading signals from sig. Signals that
// arrive during a reload are folded into one more reload (sig is buffered
// by one), so a burst of SIGHUPs costs at most two.
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
