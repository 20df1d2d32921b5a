package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the dpfw binary and returns its combined output and exit code.
// cliResult is a dpfw run's output and exit status.
type cliResult struct {
	// stdout and stderr apart, and both as they came.
	stdout, stderr, combined string
	code                     int
}

// runDPFW runs the dpfw binary with args.
func runDPFW(t *testing.T, args ...string) cliResult {
	t.Helper()
	if dpfwBin == "" {
		t.Skip("dpfw binary not built (not root or no DPDK)")
	}
	var out, errb, both bytes.Buffer
	cmd := exec.Command(dpfwBin, args...)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, &both), io.MultiWriter(&errb, &both)
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), combined: both.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// runCLI runs dpfw and returns its stdout and stderr together, and its
// exit status.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	r := runDPFW(t, args...)
	return r.combined, r.code
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIErrors(t *testing.T) {
	requireDPDK(t)
	empty := filepath.Join(t.TempDir(), "empty.pcap")
	if err := os.WriteFile(empty, []byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args func(t *testing.T) []string
		want []string
	}{
		{"check: typo", func(t *testing.T) []string {
			return []string{"check", "--config", writeFile(t, "ports:\n  - name: a\n    devce: net_null0\n")}
		}, []string{"c.yaml:3:", `unknown key "devce" in ports[0]; did you mean "device"?`}},
		{"run: missing file", func(*testing.T) []string { return []string{"run", "--config", "/nonexistent.yaml"} },
			[]string{"reading config", "no such file"}},
		{"run: device not probed", func(t *testing.T) []string {
			return []string{"run", "--config", writeFile(t, `
eal: {file_prefix: dpfwt-bad1, hugepages: "no", memory_mb: 256}
ports:
  - {name: a, device: "net_pcap0,rx_pcap=/nonexistent.pcap,tx_pcap=/dev/null"}
  - {name: b, device: "net_null0"}
links: [{name: w, ports: [a, b]}]
metrics: {listen: ""}
`)}
		}, []string{`ports[0] (a): device "net_pcap0,rx_pcap=/nonexistent.pcap`, "was not probed by DPDK", "check ports[0].device"}},
		{"run: too many queues", func(t *testing.T) []string {
			return []string{"run", "--config", writeFile(t, `
eal: {file_prefix: dpfwt-bad2, hugepages: "no", memory_mb: 256}
ports:
  - {name: a, device: "net_pcap0,rx_pcap=`+empty+`,tx_pcap=/dev/null"}
  - {name: b, device: "net_null0"}
links: [{name: w, ports: [a, b]}]
workers: {cpus: [0, 1]}
metrics: {listen: ""}
`)}
		}, []string{"ports[0] (a", "2 rx / 2 tx queues asked, the device has at most 1 rx / 1 tx", "workers.cpus"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, tt.args(t)...)
			if code == 0 {
				t.Fatalf("exit code 0; want non-zero\n%s", out)
			}
			if strings.Contains(out, "panic:") {
				t.Fatalf("dpfw crashed:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCLIVersionAndDryRun(t *testing.T) {
	requireDPDK(t)
	out, code := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "dpfw ") {
		t.Errorf("dpfw version: exit %d, %q", code, out)
	}
	out, code = runCLI(t, "run", "--dry-run")
	if code != 0 || !strings.Contains(out, "--vdev net_tap0,iface=dpfw-out") || !strings.Contains(out, "link wire") {
		t.Errorf("dpfw run --dry-run: exit %d\n%s", code, out)
	}
}

// TestExitCodes: usage errors exit 2 with a suggestion, as scripts expect;
// --version works; a command group alone prints its help.
func TestExitCodes(t *testing.T) {
	requireDPDK(t)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rules", "chek"}, 2, `unknown command "chek" for "dpfw rules"; did you mean check?`},
		{[]string{"conntrack", "bogus"}, 2, "its commands are count, events, expect, flush, list, stats"},
		{[]string{"bogus"}, 2, `unknown command "bogus" for "dpfw"`},
		{[]string{"check", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"rules", "check"}, 2, "accepts 1 arg(s), received 0"},
		{[]string{"--version"}, 0, "dpfw "},
		{[]string{"rules"}, 0, "Available Commands"},
		{[]string{"check", "--config", "/nonexistent.yaml"}, 1, "no such file"},
	} {
		out, code := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("dpfw %s: exit %d, %q; want exit %d and %q", strings.Join(tt.args, " "), code, out, tt.code, tt.want)
		}
	}
}
