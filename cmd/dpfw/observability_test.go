package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
)

// TestGrafanaDashboardMetricsExist checks that every metric a panel of
// configs/grafana/dpfw.json queries is exported by a running dpfw.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	requireDPDK(t)
	b, err := os.ReadFile("../../configs/grafana/dpfw.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	want := map[string][]string{}
	metric := regexp.MustCompile(`dpfw_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				want[m] = append(want[m], p.Title)
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, m := range metric.FindAllString(v.Definition, -1) {
			want[m] = append(want[m], "variable "+v.Name)
		}
	}
	// With flow export on (to a port nobody reads), so that its metrics
	// are there too.
	collector := freeUDP(t)
	p, _, _ := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, statefulRules, "")
		c.FlowExport.Collectors = []string{collector}
	})
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	have := map[string]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			have[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					have[f[2]+s] = true
				}
			}
		}
	}
	var names []string
	for m := range want {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		if !have[m] {
			t.Errorf("dashboard queries %s (panels %v), which dpfw does not export", m, want[m])
		}
	}
	if len(names) < 15 {
		t.Errorf("the dashboard queries only %d metrics", len(names))
	}
	// Both taps were moved into namespaces: DPDK cannot see their links,
	// so dpfw exports no link_up for them rather than a false 0.
	if strings.Contains(string(body), "dpfw_port_link_up{") {
		t.Errorf("dpfw_port_link_up exported for taps moved out of dpfw's namespace (DPDK reads them as down):\n%s", body)
	}
	p.stop()
}

// TestPrometheusScrape runs Debian's Prometheus against two running dpfw
// and checks through its query API that what it stored matches the traffic
// the test sent, and that every query of the Grafana dashboard evaluates
// with two instances (no "many-to-many matching" or other error).
func TestPrometheusScrape(t *testing.T) {
	requireDPDK(t)
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed (make deps installs it)")
		}
		t.Skip("prometheus is not installed (make deps)")
	}
	p, cns, _ := tapPair(t, withRules(statefulRules))
	other := startPcap(t, nil, withRules(statefulRules))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 500ms, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: dpfw\n    static_configs: [{targets: [%q, %q]}]\n", p.metrics, other.metrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promOut e2e.Buffer
	prom.Stdout, prom.Stderr = &promOut, &promOut
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })
	query := func(q string) (float64, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		if r.Status != "success" || len(r.Data.Result) == 0 {
			return 0, fmt.Errorf("no result for %s", q)
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	// Wait until Prometheus has scraped both once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, err := query(`sum(up{job="dpfw"})`); err == nil && v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never scraped dpfw:\n%s", promOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// 10 echo requests, 0.2 s apart: their 10 replies leave the inside
	// through OUTPUT rule 1 (ESTABLISHED).
	const pings = 10
	if out, err := cns.Command("ping", "-c", fmt.Sprint(pings), "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	sel := `dpfw_rule_packets_total{job="dpfw",chain="OUTPUT",rule="1"}`
	if v, err := query("sum(" + sel + ")"); err != nil || v != pings {
		t.Errorf("Prometheus has %v echo replies through OUTPUT rule 1 (%v); the test sent %d", v, err, pings)
	}
	if direct := p.metric("dpfw_rule_packets_total", `chain="OUTPUT"`, `rule="1"`); direct != pings {
		t.Errorf("dpfw itself counts %v; want %d", direct, pings)
	}
	// The rate over the ping window: 10 packets in about 1.8 s.
	r, err := query(`max_over_time(sum(rate(` + sel + `[2s]))[30s:500ms])`)
	if err != nil || r < 2 || r > 12 {
		t.Errorf("peak rate of echo replies in Prometheus: %v (%v); want about 5/s", r, err)
	}
	for _, q := range dashboardQueries(t) {
		if err := promEvaluates(promAddr, q); err != nil {
			t.Errorf("dashboard query with two instances: %v\n  %s", err, q)
		}
	}
	if v, err := query(`count(sum by (instance, worker) (dpfw_conntrack_entries) / on (instance, worker) dpfw_conntrack_capacity)`); err != nil || v != 2 {
		t.Errorf("the table-fill panel's query gives %v series (%v); want one per instance", v, err)
	}
	other.stop()
	p.stop()
}

// dashboardQueries returns the dashboard's queries as Grafana sends them:
// every instance, a short rate interval.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../configs/grafana/dpfw.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var out []string
	r := strings.NewReplacer("$instance", ".*", "$__rate_interval", "2s")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, r.Replace(tg.Expr))
		}
	}
	return out
}

// promEvaluates runs an instant query and returns Prometheus' error, if any.
func promEvaluates(addr, q string) error {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct{ Status, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	return nil
}
