package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/tollgate-dev/tollgate/model"
)

// Size limits of what the store reads. Policy files are bounded by the
// decoder's own limit; a file a policy names (CA bundle, CRL, certificate,
// key, API key) by MaxMaterialSize, far above any real bundle (the Mozilla
// roots are about 200 KiB).
const (
	MaxPolicyFileSize = model.MaxFileSize
	MaxMaterialSize   = 4 << 20
)

// errTooLarge is returned by readRegular for a file over its limit.
var errTooLarge = errors.New("too large")

// readRegular reads a regular file (symbolic links followed) of at most
// limit bytes. Anything else is refused before it is read: a FIFO would
// block the reader forever, a device such as /dev/zero would never end.
// The file is opened non-blocking and checked again, so that swapping it for
// a FIFO between the two steps blocks nothing either.
func readRegular(path string, limit int64) ([]byte, error) {
	return readRegularInto(path, limit, nil)
}

// readRegularInto is readRegular reading into buf's storage when it is
// large enough (the result may alias buf), so that a caller reading many
// files to hash them allocates once, not once per file.
func readRegularInto(path string, limit int64, buf []byte) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(fi.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(fi.Mode())
	}
	// Room for the size the file has now and one byte more, which tells a
	// file that grew since (it is read to its end all the same).
	if want := min(fi.Size(), limit) + 1; int64(cap(buf)) < want {
		buf = make([]byte, 0, want)
	}
	data := buf[:0]
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("%w: larger than %d bytes (%s)", errTooLarge, limit, model.ByteSize{Bytes: uint64(limit)})
		}
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// notRegular says what a path is instead of a regular file.
func notRegular(m fs.FileMode) error {
	what := "not a regular file"
	switch {
	case m.IsDir():
		what = "a directory, not a file"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO), not a regular file"
	case m&fs.ModeSocket != 0:
		what = "a socket, not a regular file"
	case m&fs.ModeDevice != 0 || m&fs.ModeCharDevice != 0:
		what = "a device, not a regular file"
	}
	return errors.New(what)
}
