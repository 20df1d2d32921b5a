package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestTapTrace: dpfw trace through net_tap with the tutorial's rules. A
// ping's records name the rule that accepted each packet (the NEW echo
// request by its rule, with the path through FORWARD's policy; the replies
// by the ESTABLISHED rule) and say when a verdict came from the cache; a
// SYN to a closed port is dropped by the INPUT policy, reason rule; a bad
// filter is refused with the fix.
func TestTapTrace(t *testing.T) {
	requireDPDK(t)
	p, cns, sns := tapPair(t, withRules(statefulRules))
	resp, err := http.Get("http://" + p.metrics + "/api/trace?proto=icmp&format=json&count=6")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/trace: %v %v", err, resp)
	}
	defer resp.Body.Close()
	if out, err := cns.Command("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	var recs []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for len(recs) < 6 && sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("trace line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	if len(recs) != 6 {
		t.Fatalf("%d trace records for 3 pings; want 6: %v", len(recs), recs)
	}
	first := recs[0]
	if first["state"] != "NEW" || first["verdict"] != "ACCEPT" || first["decision"] != "INPUT#3" ||
		!strings.Contains(first["rule"].(string), "--icmp-type 8") || first["in"] != "outside" || first["out"] != "inside" ||
		first["cached"] != false || strings.Join(toStrings(first["path"]), ",") != "FORWARD policy,INPUT#3" {
		t.Errorf("the first echo request's record: %v", first)
	}
	if r := recs[1]; r["state"] != "ESTABLISHED" || r["decision"] != "OUTPUT#1" || r["in"] != "inside" {
		t.Errorf("the first reply's record: %v", r)
	}
	cached := 0
	for _, r := range recs[2:] {
		if r["verdict"] != "ACCEPT" || r["state"] != "ESTABLISHED" {
			t.Errorf("a later echo's record: %v", r)
		}
		if r["cached"] == true {
			cached++
			if len(toStrings(r["path"])) != 0 {
				t.Errorf("a cached verdict lists a path: %v", r)
			}
		}
	}
	if cached < 2 {
		t.Errorf("%d of the later echoes judged from the cache; want at least the third request and reply:\n%v", cached, recs)
	}

	// The text form, from the command, for a SYN to a port the rules keep
	// closed.
	startHelper(t, sns, "198.18.0.2:5003")
	cmd := exec.Command(dpfwBin, "trace", "-p", "tcp", "--dport", "5003", "--count", "1", "--api", p.metrics)
	done, out := background(t, cmd)
	time.Sleep(500 * time.Millisecond)
	// The dial retries its SYN for 3 s: one arrives after the trace is on.
	_, _ = fetchTimeout(cns, "198.18.0.2:5003", 3*time.Second)
	select {
	case err := <-done:
		line := out.String()
		t.Logf("dpfw trace printed: %s", line)
		if err != nil || !strings.Contains(line, "tcp 198.18.0.1:") || !strings.Contains(line, "> 198.18.0.2:5003 [S]") ||
			!strings.Contains(line, "| NEW") || !strings.Contains(line, "| FORWARD policy, INPUT policy | DROP reason rule by INPUT policy") {
			t.Errorf("dpfw trace of a SYN to a closed port: %v\n%s", err, line)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("dpfw trace saw no SYN:\n%s", out.String())
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "nosuch"}, `port "nosuch": no such port (the config has inside, outside)`},
		{[]string{"-p", "icmp", "--dport", "80"}, "--sport and --dport need -p tcp, udp or sctp"},
		{[]string{"-s", "198.18.0.300"}, `src "198.18.0.300": want an address or CIDR`},
	} {
		res, code := runCLI(t, append([]string{"trace", "--api", p.metrics}, tt.args...)...)
		if code == 0 || !strings.Contains(res, tt.want) {
			t.Errorf("dpfw trace %v: exit %d\n%s\nwant %q", tt.args, code, res, tt.want)
		}
	}
	p.stop()
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
