//go:build linux

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotifyWatcher watches directories with inotify directly, because the
// portable fsnotify API does not say when a write is complete: it reports
// IN_CLOSE_WRITE (a file written in place and closed) and IN_MOVED_TO (a
// file renamed into place, as editors and configuration management save
// atomically) as complete, so that a save can be served without waiting
// for a quiet period.
type inotifyWatcher struct {
	file   *os.File // the inotify descriptor, non-blocking, on Go's poller
	events chan dirEvent
	errs   chan error

	mu   sync.Mutex
	dirs map[int32]string // watch descriptor → directory
	wds  map[string]int32
}

// inotifyMask is what every watched directory reports.
const inotifyMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR

func newDirWatcher() (dirWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &inotifyWatcher{
		file:   os.NewFile(uintptr(fd), "inotify"),
		events: make(chan dirEvent, 256),
		errs:   make(chan error, 1),
		dirs:   map[int32]string{},
		wds:    map[string]int32{},
	}
	go w.read()
	return w, nil
}

func (w *inotifyWatcher) Add(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.wds[dir]; ok {
		return nil
	}
	wd, err := unix.InotifyAddWatch(int(w.file.Fd()), dir, inotifyMask)
	if err != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: err}
	}
	w.dirs[int32(wd)], w.wds[dir] = dir, int32(wd)
	return nil
}

func (w *inotifyWatcher) Events() <-chan dirEvent { return w.events }
func (w *inotifyWatcher) Errors() <-chan error    { return w.errs }
func (w *inotifyWatcher) Close() error            { return w.file.Close() }

// read turns inotify's records into dirEvents until the descriptor is
// closed.
func (w *inotifyWatcher) read() {
	defer close(w.events)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.fail(fmt.Errorf("inotify: %w", err))
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if raw.Len > 0 {
				b := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				name = string(b)
			}
			off += unix.SizeofInotifyEvent + int(raw.Len)
			if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.fail(errors.New("inotify queue overflowed: events were lost"))
				continue
			}
			w.mu.Lock()
			dir, ok := w.dirs[raw.Wd]
			if raw.Mask&unix.IN_IGNORED != 0 {
				delete(w.dirs, raw.Wd)
				delete(w.wds, dir)
			}
			w.mu.Unlock()
			if !ok || raw.Mask&unix.IN_IGNORED != 0 {
				continue
			}
			ev := dirEvent{Name: dir, IsDir: raw.Mask&unix.IN_ISDIR != 0}
			if name != "" {
				ev.Name = filepath.Join(dir, name)
			}
			switch m := raw.Mask; {
			case m&unix.IN_CLOSE_WRITE != 0:
				ev.Kind = eventComplete
			case m&unix.IN_MOVED_TO != 0:
				ev.Kind, ev.Created = eventComplete, true
			case m&(unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
				ev.Kind = eventGone
			case m&unix.IN_ATTRIB != 0:
				ev.Kind = eventComplete
			case m&unix.IN_CREATE != 0:
				ev.Kind, ev.Created = eventStarted, true
			default: // IN_MODIFY
				ev.Kind = eventStarted
			}
			w.events <- ev
		}
	}
}

// fail reports err unless an earlier error is still unread.
func (w *inotifyWatcher) fail(err error) {
	select {
	case w.errs <- err:
	default:
	}
}
