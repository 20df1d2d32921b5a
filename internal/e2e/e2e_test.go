package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/config"
)

// Metric sums the series of one metric whose labels contain every
// selector, and no other metric's.
func TestMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP dpfw_x x
dpfw_x{port="a",worker="0"} 2
dpfw_x{port="a",worker="1"} 3
dpfw_x{port="b",worker="0"} 5
dpfw_x_total 100
dpfw_y 7
`)
	}))
	defer srv.Close()
	p := &Proc{API: strings.TrimPrefix(srv.URL, "http://")}
	for _, tt := range []struct {
		name string
		sel  []string
		want float64
	}{
		{"dpfw_x", nil, 10},
		{"dpfw_x", []string{`port="a"`}, 5},
		{"dpfw_x", []string{`port="a"`, `worker="1"`}, 3},
		{"dpfw_y", nil, 7},
		{"dpfw_z", nil, 0},
	} {
		if got, err := p.Metric(tt.name, tt.sel...); err != nil || got != tt.want {
			t.Errorf("Metric(%s, %v) = %v, %v; want %v", tt.name, tt.sel, got, err, tt.want)
		}
	}
}

// The configs the harness builds are valid: what Start writes loads.
func TestConfigsLoad(t *testing.T) {
	dir := t.TempDir()
	for name, build := range map[string]func(*config.Config) error{
		"pcap pair": func(c *config.Config) error { _, err := PcapPair(c, dir, nil); return err },
		"tap pair":  func(c *config.Config) error { TapPair(c, "dt1o", "dt1i"); return nil },
		"source and sink": func(c *config.Config) error {
			SourceSink(c, dir+"/in.pcap")
			Iptables(c, "-P INPUT DROP\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n", "")
			return nil
		},
	} {
		c := Base()
		if err := build(&c); err != nil {
			t.Fatal(err)
		}
		text, err := config.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(name+".yaml", text); err != nil {
			t.Errorf("%s: %v\n%s", name, err, text)
		}
	}
}
