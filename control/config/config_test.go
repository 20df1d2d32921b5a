package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
)

const good = `
eal: {file_prefix: t1, hugepages: "no", memory_mb: 256}
ports:
  - name: outside
    device: net_tap0,iface=x0
  - name: inside
    device: 0000:01:00.0
links:
  - name: wire
    ports: [outside, inside]
    inside: inside
workers:
  cpus: [1]
  idle_sleep: 20us
`

func TestLoadGood(t *testing.T) {
	cfg, err := config.Load("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Workers.IdleSleep, 20*time.Microsecond; got != want {
		t.Errorf("idle_sleep: got %v; want %v", got, want)
	}
	if got := cfg.Ports[0].RxDesc; got != 1024 {
		t.Errorf("default rx_desc: got %d; want 1024", got)
	}
	if !*cfg.Ports[1].Promiscuous {
		t.Error("promiscuous should default to true")
	}
	if !config.IsPCI(cfg.Ports[1].Device) || config.IsPCI(cfg.Ports[0].Device) {
		t.Error("IsPCI misclassifies the ports")
	}
	if got := cfg.Metrics.Listen; got != "127.0.0.1:9469" {
		t.Errorf("default metrics.listen: got %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", good + "metrix: {}\n", []string{"bad.yaml:15:", `unknown key "metrix"`, `did you mean "metrics"?`}},
		{"misspelt port key", strings.Replace(good, "    device: net_tap0", "    devce: net_tap0", 1),
			[]string{"bad.yaml:5:", `unknown key "devce" in ports[0]`, `did you mean "device"?`}},
		{"unknown port in link", strings.Replace(good, "[outside, inside]", "[outsde, inside]", 1),
			[]string{"bad.yaml:10:", `links[0].ports[0]: no port named "outsde"; did you mean "outside"?`}},
		{"bad hugepages", strings.Replace(good, `hugepages: "no"`, `hugepages: maybe`, 1),
			[]string{"bad.yaml:2:", "eal.hugepages", "want auto, yes or no"}},
		{"rx_desc not a power of two", strings.Replace(good, "device: 0000:01:00.0", "device: 0000:01:00.0\n    rx_desc: 1000", 1),
			[]string{"bad.yaml:8:", "ports[1].rx_desc: 1000: want a power of two"}},
		{"bad device", strings.Replace(good, "net_tap0,iface=x0", "tap0", 1), []string{"ports[0].device", `"tap0"`}},
		{"duplicate cpu", strings.Replace(good, "cpus: [1]", "cpus: [1, 1]", 1), []string{"workers.cpus[1]", "listed twice"}},
		{"sync mode", good + "sync: {mode: notrak, local: 198.18.9.1:3780, peer: 198.18.9.2:3780}\n",
			[]string{"bad.yaml:15:", `sync.mode: "notrak": want notrack or ftfw`}},
		{"sync address", good + "sync: {mode: ftfw, local: 198.18.9.1, peer: 198.18.9.2:3780}\n",
			[]string{`sync.local: "198.18.9.1": want address:port`}},
		{"sync families", good + "sync: {mode: ftfw, local: 198.18.9.1:3780, peer: \"[2001:2::2]:3780\"}\n",
			[]string{"sync.peer", "two families"}},
		{"sync link", good + "sync: {mode: ftfw, local: 198.18.9.1:3780, peer: 198.18.9.2:3780, link: wrie}\n",
			[]string{`sync.link: no link named "wrie"; did you mean "wire"?`}},
		{"sync role", good + "sync: {mode: ftfw, role: primary, local: 198.18.9.1:3780, peer: 198.18.9.2:3780}\n",
			[]string{`sync.role: "primary": want active, backup or active-active`}},
		{"sync failover", good + "sync: {mode: ftfw, failover_after: 500ms, local: 198.18.9.1:3780, peer: 198.18.9.2:3780}\n",
			[]string{"sync.failover_after: 500ms: want 0"}},
		{"sync multicast not a group", good + "sync: {mode: ftfw, local: 198.18.9.1:3780, peer: 198.18.9.2:3780, multicast: 198.18.9.255:3780}\n",
			[]string{"bad.yaml:15:", `sync.multicast: "198.18.9.255:3780": want a multicast group:port`}},
		{"sync multicast family", good + "sync: {mode: ftfw, local: 198.18.9.1:3780, peer: 198.18.9.2:3780, multicast: \"[ff02::1:3]:3780\"}\n",
			[]string{"sync.multicast", "two families"}},
		{"sync ready timeout", good + "sync: {mode: ftfw, ready_timeout: 1h, local: 198.18.9.1:3780, peer: 198.18.9.2:3780}\n",
			[]string{"sync.ready_timeout: 1h0m0s: want 0"}},
		{"wrong type", strings.Replace(good, "memory_mb: 256", "memory_mb: lots", 1), []string{"bad.yaml:2:", "memory_mb"}},
		{"yaml syntax", "ports: [\n", []string{"bad.yaml:", "YAML syntax"}},
		{"not a mapping", "- a\n- b\n", []string{"bad.yaml:1:", "must be a YAML mapping"}},
		{"no ports", "eal: {file_prefix: x}\n", []string{"ports: no ports"}},
		{"link to itself", strings.Replace(good, "[outside, inside]", "[outside, outside]", 1), []string{"two different ports"}},
		{"inside not in link", strings.Replace(good, "inside: inside", "inside: nowhere", 1), []string{"links[0].inside"}},
		{"bad listen", good + "metrics: {listen: nonsense}\n", []string{"metrics.listen", "host:port"}},
		{"bad checksum mode", good + "dataplane: {checksum: sometimes}\n", []string{"bad.yaml:15:", "dataplane.checksum", "want full, hardware or off"}},
		{"adaptive range reversed", good + "conntrack: {adaptive: {start: 90, end: 60}}\n", []string{"conntrack.adaptive", "start 90, end 60", "0 < start < end"}},
		{"negative NEW cap", good + "conntrack: {new_per_second: -5}\n", []string{"conntrack.new_per_second", "-5"}},
		{"misspelt adaptive key", good + "conntrack: {adaptive: {flor: 1s}}\n", []string{`unknown key "flor"`, `did you mean "floor"?`}},
		{"listen port out of range", good + "metrics: {listen: 127.0.0.1:99999}\n", []string{"bad.yaml:15:", "metrics.listen", `port "99999": want a number 0-65535`}},
		{"fraction for an integer", strings.Replace(good, "memory_mb: 256", "memory_mb: 1.5", 1), []string{"bad.yaml:2:", "eal.memory_mb", `"1.5": want a whole number`}},
		{"integer overflow", good + "mempool: {mbufs: 18446744073709551616}\n", []string{"mempool.mbufs", `"18446744073709551616": out of range`}},
		{"mempool beyond the machine", good + "mempool: {mbufs: 1099511627776}\n", []string{"mempool.mbufs", "1099511627776: want 1024 to 268435456"}},
		{"mempool beyond eal memory", good + "mempool: {mbufs: 200000}\n", []string{"mempool.mbufs", "more than eal.memory_mb 256", "raise eal.memory_mb to at least"}},
		{"second document", good + "---\nworkers: {cpus: [2]}\n", []string{"bad.yaml:15:", "a second YAML document"}},
		{"long bad value quoted short", strings.Replace(good, "memory_mb: 256", "memory_mb: "+strings.Repeat("9", 100000)+"x", 1), []string{"eal.memory_mb", "(100001 bytes)"}},
		{"long unknown key quoted short", good + strings.Repeat("k", 1000) + ": 1\n", []string{"unknown key", "(1000 bytes)"}},
		{"bad watch", good + "rules: {watch: sometimes, allow_empty: true}\n", []string{"rules.watch", "want rename"}},
		{"bad reload timeout", good + "rules: {reload_timeout: 1ms, allow_empty: true}\n", []string{"rules.reload_timeout", "want 1s to 10m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(err.Error()) > 4096 {
				t.Errorf("error is %d bytes long; bad values must be quoted short", len(err.Error()))
			}
		})
	}
}

// TestReadBounded: config and rules files are read bounded, once, and
// only if they are regular files; each refusal is fast and says why.
func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.rules")
	if err := os.WriteFile(big, make([]byte, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.rules")
	if err := os.WriteFile(small, []byte("-A INPUT -j ACCEPT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		limit      int64
		want       string
	}{
		{"FIFO", fifo, 1 << 20, "is a FIFO"},
		{"device that never ends", "/dev/zero", 1 << 20, "is a device"},
		{"directory", dir, 1 << 20, "is a directory"},
		{"over the limit", big, 2048, "larger than 2048 bytes"},
		{"missing", filepath.Join(dir, "none"), 1 << 20, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := config.ReadStable("rules.file", tt.path, tt.limit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
		})
	}
	b, err := config.ReadStable("rules.file", small, 1<<20)
	if err != nil || string(b) != "-A INPUT -j ACCEPT\n" {
		t.Fatalf("reading a small file: %q, %v", b, err)
	}

	// The config names the rules file; loading reads it once and keeps
	// the text, so what is compiled (and hashed) cannot change under it.
	cfgPath := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfgPath, []byte(good+"rules: {file: small.rules}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if name, text := cfg.RulesText(); name != small || text != "-A INPUT -j ACCEPT\n" {
		t.Errorf("RulesText after the file changed: %q %q; want the text read at load", name, text)
	}
	for _, bad := range []string{"rules: {file: fifo}\n", "rules: {file: /dev/zero}\n", "rules: {file: big.rules, max_file_size: 2048}\n"} {
		if err := os.WriteFile(cfgPath, []byte(good+bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := config.LoadFile(cfgPath); err == nil || !strings.Contains(err.Error(), "c.yaml:15: ") {
			t.Errorf("%s: got %v; want an error at c.yaml:15", strings.TrimSpace(bad), err)
		}
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("DPFW_METRICS_LISTEN", "127.0.0.1:9999")
	t.Setenv("DPFW_WORKERS_IDLE_POLLS", "7")
	cfg, err := config.Load("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9999" || cfg.Workers.IdlePolls != 7 {
		t.Errorf("env overrides not applied: listen %q idle_polls %d", cfg.Metrics.Listen, cfg.Workers.IdlePolls)
	}
	t.Setenv("DPFW_WORKERS_IDLE_POLLS", "-1")
	if _, err := config.Load("good.yaml", []byte(good)); err == nil || !strings.Contains(err.Error(), "workers.idle_polls") {
		t.Errorf("a bad env override must fail validation; got %v", err)
	}
}

// TestExamples loads and validates every config shipped in configs/.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d configs; want the default, the reference and the examples", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1); err != nil {
				t.Errorf("rules: %v", err)
			}
		})
	}
}

// TestReadmeSnippets loads every ```yaml block of the README that starts
// with a "# dpfw config" comment.
func TestReadmeSnippets(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if !strings.HasPrefix(body, "# dpfw config") {
			continue
		}
		n++
		// As if the snippet were a file in configs/: relative paths
		// (a set's file) resolve there.
		cfg, err := config.Load("../../configs/README.md snippet", []byte(body))
		if err != nil {
			t.Errorf("README snippet %d: %v", n, err)
			continue
		}
		if _, err := ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1); err != nil {
			t.Errorf("README snippet %d rules: %v", n, err)
		}
	}
	if n == 0 {
		t.Error("README has no '# dpfw config' yaml snippet")
	}
}

func TestNearest(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"devce", "device"}, {"Ports", "ports"}, {"zzzzzzzz", ""},
	} {
		if got := config.Nearest(tt.in, []string{"device", "ports", "name"}); got != tt.want {
			t.Errorf("Nearest(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("ports: [{name: a, device: net_null0}]\n"))
	f.Add([]byte("eal: {args: [1, 2]}\nworkers: {cpus: 3}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := config.Load("fuzz.yaml", b)
		if err != nil {
			return
		}
		if len(cfg.Validate()) != 0 {
			t.Fatal("Load accepted a config that does not validate")
		}
		// What Marshal writes (the harness starts dpfw from it) loads back
		// to the same config.
		text, err := config.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := config.Load("fuzz.yaml", text)
		if err != nil {
			t.Fatalf("Marshal's output does not load: %v\n%s", err, text)
		}
		again.Lines = cfg.Lines
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("Marshal's output loads as another config:\n%s\ngot  %+v\nwant %+v", text, *again, *cfg)
		}
	})
}

// TestSyncKeyFile: sync.key_file must exist, hold at least 16 bytes, and
// not be readable by others; each refusal says how to fix it.
func TestSyncKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  c2VjcmV0IHNoYXJlZCBrZXkgb2YgMzIgYnl0ZXM=\n", 0o600)
	for _, tc := range []struct {
		path, want string
	}{
		{good, ""},
		{write("short", "tooshort\n", 0o600), "holds 8 bytes of key: want at least 16"},
		{write("open", "c2VjcmV0IHNoYXJlZCBrZXkgb2YgMzIgYnl0ZXM=", 0o644), "chmod 600"},
		{filepath.Join(dir, "missing"), "head -c 32 /dev/urandom"},
		{write("huge", strings.Repeat("k", 5000), 0o600), "at most 4096 bytes"},
		{private(t, filepath.Join(dir, "adir")), "want a regular file"},
	} {
		key, err := config.LoadSyncKey(tc.path)
		switch {
		case tc.want == "" && (err != nil || string(key) != "c2VjcmV0IHNoYXJlZCBrZXkgb2YgMzIgYnl0ZXM="):
			t.Errorf("%s: %q, %v; want the trimmed key", tc.path, key, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error with %q", tc.path, err, tc.want)
		}
	}
}

// private makes directory path, not accessible to others.
func private(t *testing.T, path string) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}
