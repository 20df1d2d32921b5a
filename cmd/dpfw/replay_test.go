package main

import (
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// replayConfig writes the config startPcap runs with change (nil: none)
// to a file, for dpfw replay.
func replayConfig(t *testing.T, change func(*config.Config)) string {
	t.Helper()
	cfg := e2e.Base()
	if _, err := e2e.PcapPair(&cfg, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(&cfg)
	}
	text, err := config.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, string(text))
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
	res := runDPFW(t, args...)
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
	hostileRules := withRules(pcapgen.HostileRules)
	var frames [][]byte
	cat := pcapgen.Hostile()
	for _, h := range cat {
		frames = append(frames, h.Frame)
	}
	fates, fwd := replayFrames(t, replayConfig(t, hostileRules), frames)
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
	p := startPcap(t, frames, hostileRules)
	p.waitReceived()
	sameFrames(t, p.forwarded(), fwd)

	for _, mode := range []string{"epsv", "port"} {
		ftp, err := pcapgen.Read(filepath.Join("testdata", "ftp-"+mode+".pcap"))
		if err != nil {
			t.Fatal(err)
		}
		_, rf := replayFrames(t, replayConfig(t, ftpPcapConfig), ftp)
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
	cfg := replayConfig(t, withRules("-P FORWARD DROP\n-A FORWARD -p udp --dport 53 -j ACCEPT\n"))
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
	res := runDPFW(t, "replay", "--config", cfg, "--port", "a="+pcapgen.ClientMAC.String(), in)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != 0 || len(lines) != 2 ||
		!strings.Contains(lines[0], "in a: ACCEPT UNTRACKED by FORWARD#1 (-A FORWARD -p udp -m udp --dport 53 -j ACCEPT)") ||
		!strings.Contains(lines[1], "in a: DROP UNTRACKED by FORWARD policy reason rule") {
		t.Errorf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "2 frames: 1 accepted, 1 dropped") {
		t.Errorf("summary: %s", res.stderr)
	}
	res = runDPFW(t, "replay", "--config", cfg, "--port", "b=02:00:00:00:00:99", in)
	if res.code == 0 || !strings.Contains(res.stderr, "frame 1 (source MAC "+pcapgen.ClientMAC.String()) || !strings.Contains(res.stderr, "add --port NAME=") {
		t.Errorf("frame from no port: exit %d: %s", res.code, res.stderr)
	}
	res = runDPFW(t, "replay", "--config", cfg, "--port", "c=1", in)
	if res.code == 0 || !strings.Contains(res.stderr, `the config has no port "c"`) {
		t.Errorf("unknown port: exit %d: %s", res.code, res.stderr)
	}
	res = runDPFW(t, "replay", "--config", cfg, "--port", "a", in)
	if res.code != 2 || !strings.Contains(res.stderr, "want NAME=MAC") {
		t.Errorf("bad --port: exit %d: %s", res.code, res.stderr)
	}
}
