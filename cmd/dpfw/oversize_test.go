package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// TestPcapOversize: frames larger than one mbuf (mempool.data_room) arrive
// in chained mbufs; dpfw drops them under their own reason and logs it,
// forwards the frames that fit, and returns every mbuf. dpfw check warns
// about the MTU that does not fit.
func TestPcapOversize(t *testing.T) {
	requireDPDK(t)
	dir := t.TempDir()
	var frames [][]byte
	for i := 0; i < 40; i++ {
		size := 200
		if i%4 == 0 {
			size = 1200 // does not fit 512 - 128 bytes
		}
		frames = append(frames, pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, pcapgen.ClientIP(1), pcapgen.ServerIP(1), 40000, 53, size))
	}
	cfg := e2e.Base()
	f, err := e2e.PcapPair(&cfg, dir, frames)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mempool.Mbufs, cfg.Mempool.DataRoom = 8191, 512
	p := startDPFW(t, cfg)
	if got := p.waitMetric("dpfw_worker_rx_packets_total", "", 40, 10*time.Second); got != 40 {
		t.Fatalf("received %v of 40 frames", got)
	}
	if n := p.waitMetric("dpfw_worker_dropped_packets_total", `reason="oversize"`, 10, 5*time.Second); n != 10 {
		t.Errorf("oversize drops: %v; want 10\n%s", n, p.dump())
	}
	if !p.waitLog("frames larger than one mbuf were dropped", 15*time.Second) {
		t.Errorf("no log line about the oversize frames:\n%s", p.errOut.String())
	}
	p.stop()
	got, err := pcapgen.Read(f.Out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 {
		t.Errorf("%d frames forwarded; want the 30 that fit", len(got))
	}
	checkOut, err := runCheck(t, p.cfgPath)
	if err != nil || !strings.Contains(checkOut, "warning: ports[0].mtu: 1500: a frame of this MTU") || !strings.Contains(checkOut, "raise mempool.data_room to at least 1650") {
		t.Errorf("dpfw check: %v\n%s", err, checkOut)
	}
}

// runCheck runs dpfw check on a config file.
func runCheck(t *testing.T, path string) (string, error) {
	t.Helper()
	out, err := exec.Command(dpfwBin, "check", "--config", path).CombinedOutput()
	return string(out), err
}

// TestJSONLogsIncludeDPDK: with log.format json every line dpfw writes to
// stderr is JSON, DPDK's own (EAL, drivers) included, as source=dpdk.
func TestJSONLogsIncludeDPDK(t *testing.T) {
	requireDPDK(t)
	p := startPcap(t, nil, func(c *config.Config) { c.Log.Format, c.Log.Level = "json", "debug" })
	p.stop()
	dpdkLines := 0
	for _, l := range strings.Split(strings.TrimSpace(p.errOut.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not a JSON log line: %q", l)
			continue
		}
		if m["source"] == "dpdk" {
			dpdkLines++
		}
	}
	if dpdkLines == 0 {
		t.Errorf("no DPDK line in the log:\n%s", p.errOut.String())
	}
}
