package config_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
)

// Marshal's output loads back to the same Config: every example config,
// and one with lists, pointers and changed durations.
func TestMarshalRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	var cfgs []*config.Config
	for _, f := range files {
		c, err := config.LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, c)
	}
	odd := config.Default()
	no := false
	odd.Ports = []config.Port{{Name: "a", Device: "net_null0", Promiscuous: &no, MTU: 9000}, {Name: "b", Device: "net_null1"}}
	odd.Links = []config.Link{{Name: "w", Ports: []string{"a", "b"}, Inside: "b"}}
	odd.Mempool.DataRoom = 9216 + 128
	odd.Workers.IdleSleep = 125 * time.Microsecond
	odd.Conntrack.TCPLoose = false
	odd.Conntrack.FTP.Ports = []int{21, 2121}
	odd.Rules.Iptables = "-P FORWARD DROP\n-A FORWARD -p tcp --dport 22 -m state --state NEW -j ACCEPT\n"
	b, err := config.Marshal(&odd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load("odd.yaml", b)
	if err != nil {
		t.Fatalf("Marshal's output does not load: %v\n%s", err, b)
	}
	if c.Ports[0].Promiscuous == nil || *c.Ports[0].Promiscuous || c.Ports[0].MTU != 9000 || c.Ports[1].Promiscuous == nil || !*c.Ports[1].Promiscuous ||
		c.Workers.IdleSleep != odd.Workers.IdleSleep || c.Conntrack.TCPLoose || !reflect.DeepEqual(c.Conntrack.FTP.Ports, odd.Conntrack.FTP.Ports) ||
		c.Links[0].Inside != "b" || c.Mempool.DataRoom != odd.Mempool.DataRoom || c.Rules.Iptables != odd.Rules.Iptables {
		t.Fatalf("a config built in code loads as another:\n%s", b)
	}
	cfgs = append(cfgs, c)
	for i, c := range cfgs {
		b, err := config.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(c.Dir, "marshalled.yaml")
		got, err := config.Load(name, b)
		if err != nil {
			t.Fatalf("config %d (%s): Marshal's output does not load: %v\n%s", i, c.Name, err, b)
		}
		want := *c
		want.Name, want.Lines, want.Dir = got.Name, got.Lines, got.Dir
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("config %d (%s) does not round-trip:\n%s\ngot  %+v\nwant %+v", i, c.Name, b, *got, want)
		}
	}
}
