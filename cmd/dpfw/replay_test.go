package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/perf/pcapgen"
)

// cliResult is a dpfw run's output and exit status.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runSplit runs the dpfw binary, keeping its stdout and stderr apart.
func runSplit(t *testing.T, args ...string) cliResult {
	t.Helper()
	if dpfwBin == "" {
		t.Skip("dpfw binary not built (not root or no DPDK)")
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(dpfwBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// replayConfig is a net_pcap config of ports a and b (link options link)
// and the rules in extra, as startPcap runs them, written to a file.
func replayConfig(t *testing.T, link, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replay.yaml")
	cfg := fmt.Sprintf(`eal: {file_prefix: replay, hugepages: "no", memory_mb: 256}
ports:
  - {name: a, device: "net_pcap0,rx_pcap=/dev/null"}
  - {name: b, device: "net_pcap1,rx_pcap=/dev/null"}
links: [{name: wire, ports: [a, b]%s}]
workers: {cpus: [1]}
%s`, link, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replayFrames runs `dpfw replay` over frames, all entering port a (as the
// net_pcap tests feed them), and returns the fates and what it would
// forward.
func replayFrames(t *testing.T, cfg string, frames [][]byte) ([]map[string]any, [][]byte) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcap")
	if err := pcapgen.Write(in, frames); err != nil {
		t.Fatal(err)
	}
	macs := map[string]bool{}
	for _, f := range frames {
		if len(f) >= 12 {
			macs[net.HardwareAddr(f[6:12]).String()] = true
		}
	}
	args := []string{"replay", "--config", cfg, "--json", "-w", out, in, "--port", "a=any"}
	for m := range macs {
		args = append(args, "--port", "a="+m)
	}
	res := runSplit(t, args...)
	if res.code != 0 {
		t.Fatalf("dpfw replay: exit %d\n%s", res.code, res.stderr)
	}
	var fates []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("replay line %q: %v", l, err)
		}
		fates = append(fates, m)
	}
	fwd, err := pcapgen.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	return fates, fwd
}

// TestReplayMatchesPcap: the hostile capture and the recorded FTP sessions
// through `dpfw replay` and through a running dpfw (net_pcap): the same
// frames come out, byte for byte and in order, and every hostile frame's
// replayed drop reason is its label.
func TestReplayMatchesPcap(t *testing.T) {
	requireDPDK(t)
	hostileRules := "rules:\n  iptables: |\n    " + indent(pcapgen.HostileRules) + "\n"
	var frames [][]byte
	cat := pcapgen.Hostile()
	for _, h := range cat {
		frames = append(frames, h.Frame)
	}
	fates, fwd := replayFrames(t, replayConfig(t, "", hostileRules), frames)
	if len(fates) != len(cat) {
		t.Fatalf("replay reported %d fates for %d frames", len(fates), len(cat))
	}
	for i, h := range cat {
		want := h.Reason
		if want == "" {
			want = "none"
		}
		if got := fates[i]["reason"]; got != want || int(fates[i]["frame"].(float64)) != i+1 {
			t.Errorf("frame %d (%s): replay says %v (frame %v); want %s", i+1, h.Name, got, fates[i]["frame"], want)
		}
	}
	p := startPcap(t, frames, "", hostileRules)
	p.waitReceived()
	sameFrames(t, p.forwarded(), fwd)

	for _, mode := range []string{"epsv", "port"} {
		ftp, err := pcapgen.Read(filepath.Join("testdata", "ftp-"+mode+".pcap"))
		if err != nil {
			t.Fatal(err)
		}
		_, rf := replayFrames(t, replayConfig(t, ", inside: b", ftpRules), ftp)
		got := pcapReplay(t, ftp)
		if len(rf) != len(got) {
			t.Errorf("ftp-%s: replay forwards %d frames, dpfw %d", mode, len(rf), len(got))
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], rf[i]) {
				t.Errorf("ftp-%s: frame %d differs between replay and dpfw", mode, i)
			}
		}
	}
}

// TestReplayCLI: the text output names the rule that decided, and a frame
// from no --port is an error naming the frame and the fix.
func TestReplayCLI(t *testing.T) {
	cfg := replayConfig(t, "", "rules:\n  iptables: |\n    -P FORWARD DROP\n    -A FORWARD -p udp --dport 53 -j ACCEPT\n")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pcap")
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	frames := [][]byte{
		pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 53, 10),
		pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 54, 10),
	}
	if err := pcapgen.Write(in, frames); err != nil {
		t.Fatal(err)
	}
	res := runSplit(t, "replay", "--config", cfg, "--port", "a="+pcapgen.ClientMAC.String(), in)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != 0 || len(lines) != 2 ||
		!strings.Contains(lines[0], "in a: ACCEPT UNTRACKED by FORWARD#1 (-A FORWARD -p udp -m udp --dport 53 -j ACCEPT)") ||
		!strings.Contains(lines[1], "in a: DROP UNTRACKED by FORWARD policy reason rule") {
		t.Errorf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "2 frames: 1 accepted, 1 dropped") {
		t.Errorf("summary: %s", res.stderr)
	}
	res = runSplit(t, "replay", "--config", cfg, "--port", "b=02:00:00:00:00:99", in)
	if res.code == 0 || !strings.Contains(res.stderr, "frame 1 (source MAC "+pcapgen.ClientMAC.String()) || !strings.Contains(res.stderr, "add --port NAME=") {
		t.Errorf("frame from no port: exit %d: %s", res.code, res.stderr)
	}
	res = runSplit(t, "replay", "--config", cfg, "--port", "c=1", in)
	if res.code == 0 || !strings.Contains(res.stderr, `the config has no port "c"`) {
		t.Errorf("unknown port: exit %d: %s", res.code, res.stderr)
	}
	res = runSplit(t, "replay", "--config", cfg, "--port", "a", in)
	if res.code != 2 || !strings.Contains(res.stderr, "want NAME=MAC") {
		t.Errorf("bad --port: exit %d: %s", res.code, res.stderr)
	}
}
