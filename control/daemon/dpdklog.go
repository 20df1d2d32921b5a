package daemon

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dpfw/dpfw/cgo/dpdk"
)

// DPDK's own log (the EAL, the drivers) goes through dpfw's logger, so that
// it has its level, format (text or JSON) and destination instead of raw
// lines on stderr: DPDK writes into a pipe, a goroutine logs each line with
// source=dpdk at the level DPDK gave it.

// routeDPDKLog sends DPDK's log to log. Call it before the EAL starts. The
// returned flush waits (a second at most) until every line written so far
// is logged: after a failed EAL start, the reason is in them.
func routeDPDKLog(log *slog.Logger) (flush func(), err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if err := dpdk.LogTo(w.Fd()); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	// w stays open for the process's life: DPDK logs until exit.
	marks := make(chan struct{}, 1)
	go logLines(r, log, marks)
	return func() {
		if _, err := io.WriteString(w, flushMark+"\n"); err != nil {
			return
		}
		select {
		case <-marks:
		case <-time.After(time.Second):
		}
	}, nil
}

// flushMark is the line flush writes: not a level digit, never DPDK's.
const flushMark = "0dpfw-flush"

// logLines logs each level-prefixed line of r, and signals marks at each
// flushMark.
func logLines(r io.Reader, log *slog.Logger, marks chan<- struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		if sc.Text() == flushMark {
			select {
			case marks <- struct{}{}:
			default:
			}
			continue
		}
		lvl, msg := dpdkLevel(sc.Text())
		if msg = strings.TrimSpace(msg); msg != "" {
			log.Log(context.Background(), lvl, msg, "source", "dpdk")
		}
	}
}

// dpdkLevel splits a line's level digit (RTE_LOG_EMERG 1 … RTE_LOG_DEBUG
// 8) from its text and maps it to slog's levels.
func dpdkLevel(line string) (slog.Level, string) {
	if line == "" || line[0] < '1' || line[0] > '8' {
		return slog.LevelInfo, line
	}
	switch line[0] {
	case '1', '2', '3', '4': // emerg, alert, crit, err
		return slog.LevelError, line[1:]
	case '5':
		return slog.LevelWarn, line[1:]
	case '6', '7':
		return slog.LevelInfo, line[1:]
	}
	return slog.LevelDebug, line[1:]
}
