package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
)

// updateCaptures re-records testdata/ftp-*.pcap from live sessions (one
// worker), for TestPcapFTPGolden.
var updateCaptures = flag.Bool("update-ftp-captures", false, "record testdata/ftp-*.pcap from the live FTP test")

// ftpRules open only the FTP control port, as the tutorial does; data
// connections must pass as RELATED.
const ftpRules = `-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp --dport 21 -m state --state NEW -j ACCEPT
`

// startVsftpd runs vsftpd in ns serving dir anonymously, by PID, in the
// foreground; it is killed at cleanup.
func startVsftpd(t *testing.T, ns netns, dir string) {
	t.Helper()
	bin, err := exec.LookPath("vsftpd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("vsftpd is not installed (make deps installs it)")
		}
		t.Skip("vsftpd is not installed (make deps)")
	}
	if err := os.MkdirAll("/var/run/vsftpd/empty", 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "vsftpd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen=YES
listen_ipv6=NO
listen_address=198.18.0.2
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=%s
local_enable=NO
write_enable=NO
connect_from_port_20=YES
port_enable=YES
pasv_enable=YES
pasv_min_port=50000
pasv_max_port=50100
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
dirmessage_enable=NO
ftp_username=ftp
secure_chroot_dir=/var/run/vsftpd/empty
`, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(bin, conf)
	var out e2e.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 50; i++ {
		if err := ns.Command("bash", "-c", "exec 3<>/dev/tcp/198.18.0.2/21").Run(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("vsftpd did not start:\n%s", out.String())
}

func TestTapFTP(t *testing.T) {
	requireDPDK(t)
	for _, cpus := range [][]int{{1}, {0, 1}} {
		t.Run(fmt.Sprint("workers_", cpus), func(t *testing.T) { testTapFTP(t, cpus) })
	}
}

func testTapFTP(t *testing.T, cpus []int) {
	p, cns, sns := tapPairWorkers(t, withRules(ftpRules), cpus)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 2<<20)
	_, _ = newDataSource().Read(blob)
	if err := os.WriteFile(filepath.Join(dir, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])
	startVsftpd(t, sns, dir)
	modes := []struct {
		name    string
		args    []string
		command string // what curl -v must show it sent
	}{
		{"passive_epsv", nil, "EPSV"},
		{"passive_pasv", []string{"--disable-epsv"}, "PASV"},
		{"active_eprt", []string{"-P", "-"}, "EPRT |1|"},
		{"active_port", []string{"-P", "-", "--disable-eprt"}, "PORT 198,18,0,1,"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if *updateCaptures && len(cpus) == 1 {
				stop := capture(t, sns, strings.TrimPrefix(strings.TrimPrefix(m.name, "passive_"), "active_"))
				// A small file keeps the capture small.
				small := filepath.Join(dir, "small")
				_ = os.WriteFile(small, blob[:8192], 0o644)
				if out, err := cns.Command("curl", append(append([]string{"-sS", "--max-time", "10", "-o", "/dev/null"}, m.args...), "ftp://198.18.0.2/small")...).CombinedOutput(); err != nil {
					t.Fatalf("capture session: %v\n%s", err, out)
				}
				time.Sleep(time.Second)
				stop()
			}
			out := filepath.Join(t.TempDir(), "got")
			args := append([]string{"-v", "-sS", "--max-time", "20", "-o", out}, m.args...)
			args = append(args, "ftp://198.18.0.2/blob")
			log, err := cns.Command("curl", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s\n%s", err, log, p.dump())
			}
			if !strings.Contains(string(log), "> "+m.command) {
				t.Fatalf("curl did not use %s (it falls back silently):\n%s", m.command, log)
			}
			got, _ := os.ReadFile(out)
			s := sha256.Sum256(got)
			if hex.EncodeToString(s[:]) != want {
				t.Fatalf("downloaded %d bytes with the wrong sha256", len(got))
			}
		})
	}
	if m := p.metric("dpfw_conntrack_expectations_matched_total"); m < float64(len(modes)) {
		t.Errorf("expectations matched: %v; want %d", m, len(modes))
	}
	out, _ := p.cli("conntrack", "list", "-p", "tcp")
	if !strings.Contains(out, "[RELATED] master=") || !strings.Contains(out, "dport=21") {
		t.Errorf("conntrack list shows no RELATED data connection linked to its control connection:\n%s", out)
	}
	p.stop()

	// The same with the FTP helper off: the data connections are NEW, so
	// the rules drop them and the downloads fail.
	p2, cns2, sns2 := tapPairWorkers(t, func(c *config.Config) {
		e2e.Iptables(c, ftpRules, "")
		c.Conntrack.FTP.Enabled = false
	}, cpus)
	startVsftpd(t, sns2, dir)
	for _, args := range [][]string{{"-P", "-"}, {"--disable-epsv"}} {
		a := append([]string{"-sS", "--max-time", "4", "-o", "/dev/null"}, args...)
		if err := cns2.Command("curl", append(a, "ftp://198.18.0.2/blob")...).Run(); err == nil {
			t.Errorf("curl %v succeeded with the FTP helper off", args)
		}
	}
	p2.stop()
}

// capture runs tcpdump on the server's interface in ns, writing
// testdata/ftp-NAME.pcap; the returned function stops it.
func capture(t *testing.T, ns netns, name string) func() {
	t.Helper()
	ifc := ""
	if out, err := ns.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "dt") {
				ifc = strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
			}
		}
	}
	cmd := ns.Command("tcpdump", "-i", ifc, "-U", "-w", filepath.Join("testdata", "ftp-"+name+".pcap"), "tcp")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // tcpdump needs a moment to attach
	return func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
}
