package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// sdNotify sends a state line ("READY=1", "STOPPING=1", "WATCHDOG=1",
// "STATUS=…") to systemd when it runs dpfw as a Type=notify service
// (NOTIFY_SOCKET is set); otherwise it does nothing.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// watchdogEvery returns half the watchdog interval systemd asks for
// (WATCHDOG_USEC), or 0 if it asks for none.
func watchdogEvery() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}

// writeReadyFile writes path (atomically: a temporary, then a rename) for
// scripts that wait for dpfw to forward.
func writeReadyFile(path string, body string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}
