package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const reloadBase = `
eal: {file_prefix: t}
ports:
  - {name: outside, device: "net_tap0,iface=a"}
  - {name: inside, device: "net_tap1,iface=b"}
links: [{name: w, ports: [outside, inside], inside: inside}]
rules: {file: rules.v4, reload_timeout: 1s}
`

// bigRules is a save file of n distinct rules.
func bigRules(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT DROP [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A INPUT -s 198.%d.%d.%d/32 -p tcp --dport %d -j ACCEPT\n", 18+i/64000%2, i/250%256, i%250+1, 1024+i%60000)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// testDaemon is a Daemon without DPDK: its rule set and reloader only.
func testDaemon(t *testing.T, rules string) (*Daemon, string) {
	return testDaemonConfig(t, reloadBase, rules, nil)
}

// testDaemonConfig is testDaemon with its config and more files in its
// directory.
func testDaemonConfig(t *testing.T, base, rules string, files map[string]string) (*Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "dpfw.yaml")
	if err := os.WriteFile(path, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	writeRules(t, dir, rules)
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ruleset.Compile(cfg, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Config: cfg, ConfigPath: path, log: slog.New(slog.NewTextHandler(io.Discard, nil)), quit: make(chan struct{})}
	d.active.Store(cfg)
	d.Rules.Store(filter.Install(f, 1, nil))
	d.reloads.kick = make(chan struct{}, 1)
	go d.runReloads(d.quit)
	t.Cleanup(func() { close(d.quit) })
	return d, dir
}

func writeRules(t *testing.T, dir, text string) {
	t.Helper()
	tmp := filepath.Join(dir, "rules.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "rules.v4")); err != nil {
		t.Fatal(err)
	}
}

// TestReloadDeadline: a reload past rules.reload_timeout is abandoned at
// its deadline (the compile is cancelled), the running rules stay, and the
// next good reload applies.
func TestReloadDeadline(t *testing.T) {
	d, dir := testDaemon(t, bigRules(10))
	old := d.Rules.Load()
	writeRules(t, dir, bigRules(600_000))
	timeouts := testutil.ToFloat64(reloads.WithLabelValues("timeout"))
	start := time.Now()
	_, err := d.Reload(context.Background())
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "abandoned: the reload took longer than rules.reload_timeout (1s)") {
		t.Fatalf("slow reload: %v; want it abandoned", err)
	}
	if took > 3*time.Second {
		t.Errorf("the abandoned reload answered after %v; want about 1 s", took)
	}
	if d.Rules.Load() != old {
		t.Errorf("an abandoned reload replaced the rules")
	}
	if got := testutil.ToFloat64(reloads.WithLabelValues("timeout")); got != timeouts+1 {
		t.Errorf("timeouts counted: %v; want %v", got, timeouts+1)
	}
	// The cancelled compile returns promptly: the reloader is free again.
	deadline := time.Now().Add(5 * time.Second)
	for d.reloads.stuck.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d.reloads.stuck.Load() {
		t.Fatalf("the abandoned compile is still running 5 s after its deadline")
	}
	writeRules(t, dir, bigRules(20))
	res, err := d.Reload(context.Background())
	if err != nil || res.Rules != 20 || d.Rules.Load().Gen != old.Gen+1 {
		t.Fatalf("good reload after an abandoned one: %+v, %v", res, err)
	}
}

// TestReloadCoalesced: requests made while a reload runs are served
// together by the next one, and all get its answer.
func TestReloadCoalesced(t *testing.T) {
	d, dir := testDaemon(t, bigRules(3000))
	writeRules(t, dir, bigRules(3001))
	before := testutil.ToFloat64(reloads.WithLabelValues("success"))
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Reload(context.Background())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("reload: %v", err)
		}
	}
	if n := testutil.ToFloat64(reloads.WithLabelValues("success")) - before; n < 1 || n > 5 {
		t.Errorf("10 concurrent requests ran %v reloads; want them coalesced (1 to 5)", n)
	}
}

// A reload that finds the running rules keeps them (generation and
// counters); one that changes only an address set's contents does not.
func TestReloadUnchangedKeeps(t *testing.T) {
	d, dir := testDaemon(t, "-A INPUT -j ACCEPT\n")
	if err := os.WriteFile(filepath.Join(dir, "rules.v4"), []byte("-A INPUT -m set --match-set bad src -j DROP\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withSet := func(addr string) {
		cfg := reloadBase + "  sets: [{name: bad, addresses: [" + addr + "]}]\n"
		cfg = strings.Replace(cfg, "rules: {file: rules.v4, reload_timeout: 1s}\n", "rules:\n  file: rules.v4\n  reload_timeout: 1s\n", 1)
		if err := os.WriteFile(filepath.Join(dir, "dpfw.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reload := func() uint32 {
		t.Helper()
		res, err := d.Reload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return res.Generation
	}
	withSet("198.18.0.1")
	g := reload()
	d.Rules.Load().State.Worker(0).Counters()[0].Packets.Add(7)
	if again := reload(); again != g {
		t.Errorf("a reload of the same rules and sets: generation %d -> %d; want it kept", g, again)
	}
	if pk, _ := d.Rules.Load().State.Totals(0); pk != 7 {
		t.Errorf("counters after an unchanged reload: %d; want 7 kept", pk)
	}
	withSet("198.18.0.2")
	if next := reload(); next == g {
		t.Errorf("a reload that changed the set's addresses kept generation %d: the old set would stay", g)
	}
}

// TestReloadSetsOnly: a reload that changes only a set file's contents
// keeps the compiled rules and their counters, with the new set in force
// (ipset's model); a set that changes family, or new rules, compile again;
// an empty set file is refused and the running rules stay.
func TestReloadSetsOnly(t *testing.T) {
	base := reloadBase + "  sets: [{name: blk, file: blk.txt}]\n"
	base = strings.Replace(base, "rules: {file: rules.v4, reload_timeout: 1s}\n  sets:", "rules:\n  file: rules.v4\n  reload_timeout: 1s\n  sets:", 1)
	d, dir := testDaemonConfig(t, base, "*filter\n-A INPUT -m set --match-set blk src -j DROP\nCOMMIT\n",
		map[string]string{"blk.txt": "198.18.0.1\n"})
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name+".tmp"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, name+".tmp"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	verdict := func(src [4]byte) filter.Verdict {
		f := d.Rules.Load()
		p := &packet.Parsed{Kind: packet.IPv4, Proto: 17}
		copy(p.Src[:], src[:])
		return f.Run(filter.Ctx{}, p, rules.StateNew, filter.HookInput, 0, 1).Verdict
	}
	old := d.Rules.Load()
	if verdict([4]byte{198, 18, 0, 2}) != filter.Accept || verdict([4]byte{198, 18, 0, 1}) != filter.Drop {
		t.Fatal("the set does not match as written")
	}
	write("blk.txt", "# now a /24\n198.18.0.0/24\n")
	res, err := d.Reload(context.Background())
	if err != nil || res.Rebuilt != "sets" {
		t.Fatalf("set-only reload: %+v %v", res, err)
	}
	now := d.Rules.Load()
	if now.State != old.State || now.Gen != old.Gen+1 {
		t.Errorf("the set-only reload replaced the counters (%v) or kept the generation (%d)", now.State != old.State, now.Gen)
	}
	if verdict([4]byte{198, 18, 0, 2}) != filter.Drop {
		t.Error("the new set is not in force")
	}
	write("blk.txt", "")
	if _, err := d.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "blk.txt: the set \"blk\" is empty") {
		t.Errorf("empty set file: %v", err)
	}
	if d.Rules.Load() != now {
		t.Error("a refused set file replaced the rules")
	}
	write("blk.txt", "198.18.0.0/24\n2001:2::1\n")
	if res, err := d.Reload(context.Background()); err != nil || res.Rebuilt != "compiled" {
		t.Errorf("a set changing family: %+v %v; want the rules compiled again", res, err)
	}
	writeRules(t, dir, "*filter\n-A INPUT -m set --match-set blk src -j REJECT\nCOMMIT\n")
	if res, err := d.Reload(context.Background()); err != nil || res.Rebuilt != "compiled" {
		t.Errorf("new rules: %+v %v", res, err)
	}
	if res, err := d.Reload(context.Background()); err != nil || res.Rebuilt != "unchanged" {
		t.Errorf("nothing changed: %+v %v", res, err)
	}
}

// TestWatchSetFile: a set file renamed into place is reloaded by the
// watcher, as the rules file is, and only the sets change.
func TestWatchSetFile(t *testing.T) {
	base := strings.Replace(reloadBase, "rules: {file: rules.v4, reload_timeout: 1s}\n",
		"rules:\n  file: rules.v4\n  reload_timeout: 1s\n  sets: [{name: blk, file: blk.txt}]\n", 1)
	d, dir := testDaemonConfig(t, base, "*filter\n-A INPUT -m set --match-set blk src -j DROP\nCOMMIT\n",
		map[string]string{"blk.txt": "198.18.0.1\n"})
	stop := make(chan struct{})
	defer close(stop)
	if err := d.Watch(stop); err != nil {
		t.Fatal(err)
	}
	old := d.Rules.Load()
	tmp := filepath.Join(dir, "blk.new")
	if err := os.WriteFile(tmp, []byte("198.18.0.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "blk.txt")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.Rules.Load() == old && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	now := d.Rules.Load()
	if now == old {
		t.Fatal("the watcher did not reload the renamed set file within 5 s")
	}
	if now.State != old.State {
		t.Error("a set file change compiled the rules again (new counters)")
	}
	if a := [16]byte{198, 18, 0, 2}; !now.Sets()[0].Contains(&a, false) || old.Sets()[0].Contains(&a, false) {
		t.Error("198.18.0.2 should be in the new set only")
	}
}
