package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestDPDKLogLines: DPDK's lines are logged at their level with
// source=dpdk, in dpfw's format; the flush mark is no line of its own.
func TestDPDKLogLines(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	marks := make(chan struct{}, 1)
	logLines(strings.NewReader("4EAL: Cannot get hugepage information.\n7EAL: Detected CPU lcores: 2\n"+flushMark+"\n5NET: warning\n8debug line\nno level\n"), log, marks)
	select {
	case <-marks:
	default:
		t.Error("the flush mark was not signalled")
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m["source"] != "dpdk" {
			t.Errorf("no source=dpdk: %q", l)
		}
		got = append(got, m["level"].(string)+" "+m["msg"].(string))
	}
	want := []string{"ERROR EAL: Cannot get hugepage information.", "INFO EAL: Detected CPU lcores: 2", "WARN NET: warning", "DEBUG debug line", "INFO no level"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("logged\n  %q\nwant\n  %q", got, want)
	}
}
