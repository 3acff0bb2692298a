//go:build !linux

package store

import (
	"fmt"

	"github.com/fsnotify/fsnotify"
)

// fsnotifyWatcher is the portable watcher: fsnotify cannot tell when a
// write is complete, so every change waits for the quiet period.
type fsnotifyWatcher struct {
	w      *fsnotify.Watcher
	events chan dirEvent
}

func newDirWatcher() (dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch policy directory: %w", err)
	}
	fw := &fsnotifyWatcher{w: w, events: make(chan dirEvent, 256)}
	go func() {
		defer close(fw.events)
		for ev := range w.Events {
			de := dirEvent{Name: ev.Name, Kind: eventStarted, Created: ev.Has(fsnotify.Create)}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				de.Kind = eventGone
			}
			fw.events <- de
		}
	}()
	return fw, nil
}

func (f *fsnotifyWatcher) Add(dir string) error    { return f.w.Add(dir) }
func (f *fsnotifyWatcher) Events() <-chan dirEvent { return f.events }
func (f *fsnotifyWatcher) Errors() <-chan error    { return f.w.Errors }
func (f *fsnotifyWatcher) Close() error            { return f.w.Close() }
