package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// MaxConfigSize bounds the config file. Real configs are a few kilobytes;
// an inline rule set (rules.iptables) may be large, so the bound is the
// rules file's default bound.
const MaxConfigSize = DefaultMaxFileSize

// DefaultMaxFileSize is rules.max_file_size's default: far above real rule
// files (100,000 iptables-save rules are about 6 MB), far below what would
// exhaust the machine.
const DefaultMaxFileSize = 64 << 20

// readAttempts is how many times ReadStable reads a file that changes
// while it is read before it gives up.
const readAttempts = 5

// ReadStable reads the regular file at path, at most limit bytes, and
// returns its contents as they were at one moment: the file's size and
// modification time are the same before and after the read (or it is read
// again, up to readAttempts times). It refuses FIFOs, devices, sockets and
// directories without reading them (opening a FIFO would block until a
// writer comes, and /dev/zero never ends), and it stops reading at limit+1
// bytes, so the memory it takes is bounded by limit whatever the file is.
// what names the file in messages ("rules.file").
func ReadStable(what, path string, limit int64) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		b, changed, err := readOnce(what, path, limit)
		if err != nil || !changed {
			return b, err
		}
		if attempt == readAttempts {
			return nil, fmt.Errorf("%s %s changed while it was read, %d times in a row; write the file elsewhere and rename it into place (see the README, \"Deploying a rules file\")", what, path, readAttempts)
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

// readOnce reads path once; changed reports that it changed meanwhile.
func readOnce(what, path string, limit int64) (b []byte, changed bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", what, err)
	}
	if err := regular(what, path, st); err != nil {
		return nil, false, err
	}
	if st.Size() > limit {
		return nil, false, tooLarge(what, path, st.Size(), limit)
	}
	// O_NONBLOCK: if a FIFO was swapped in after the Stat, opening it
	// must not wait for a writer (the Fstat below then refuses it).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", what, err)
	}
	if err := regular(what, path, before); err != nil {
		return nil, false, err
	}
	b, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("%s: reading %s: %w", what, path, err)
	}
	if int64(len(b)) > limit {
		return nil, false, tooLarge(what, path, int64(len(b)), limit)
	}
	after, err := os.Stat(path)
	if err != nil {
		// Removed or renamed over while read: read what is there now.
		if errors.Is(err, os.ErrNotExist) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("reading %s: %w", what, err)
	}
	same := os.SameFile(before, after) && after.Size() == before.Size() &&
		after.ModTime().Equal(before.ModTime()) && int64(len(b)) == after.Size()
	return b, !same, nil
}

func regular(what, path string, st os.FileInfo) error {
	if st.Mode().IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch m := st.Mode(); {
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a FIFO"
	case m&os.ModeDevice != 0:
		kind = "a device"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	}
	return fmt.Errorf("%s %s is %s: dpfw reads only regular files (a FIFO or device could block a reload or never end)", what, path, kind)
}

func tooLarge(what, path string, n, limit int64) error {
	fix := "raise rules.max_file_size if the file is really meant to be this large"
	if what == "config" {
		fix = "keep large rule sets in rules.file, whose bound is rules.max_file_size"
	}
	return fmt.Errorf("%s %s is larger than %d bytes (%s; it has %s): refused before parsing; %s",
		what, path, limit, mib(limit), sizeString(n, limit), fix)
}

func sizeString(n, limit int64) string {
	if n > limit+1 {
		return fmt.Sprintf("%d bytes", n)
	}
	return "more"
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
