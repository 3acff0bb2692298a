package store

import (
	"bytes"
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
	// Room for the size the file has now, and for the read that finds its
	// end (bytes.Buffer reads MinRead bytes at a time): a buffer that held
	// the previous file is reused when it is large enough.
	b := bytes.NewBuffer(buf[:0])
	b.Grow(int(min(fi.Size(), limit)) + bytes.MinRead)
	if _, err := b.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(b.Len()) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes (%s)", errTooLarge, limit, model.ByteSize{Bytes: uint64(limit)})
	}
	return b.Bytes(), nil
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
