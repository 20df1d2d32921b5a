# dpfw: make run (demo on virtual devices), make test (whole suite).
# Both install what is missing (Debian packages, hugepages) and need root.
SHELL := /bin/bash
GO ?= go
BIN := bin/dpfw
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
DEB_PKGS := dpdk dpdk-dev libdpdk-dev pkg-config libpcap-dev iproute2 iputils-ping curl ethtool procps prometheus vsftpd iperf3 tcpdump iptables nftables conntrack conntrackd netbase nfdump ipset
# Fuzz budget: empty = each target's execution count below (about 10 s
# here); or a duration/count for every target, e.g. FUZZTIME=10m.
FUZZTIME ?=

.PHONY: all build deps hugepages run test test-unit test-race fuzz fuzz-corpus bench perf pgo perf-smoke check-format vet clean install uninstall man

all: build

# Install DPDK 22.11 and the tools the tests and the demo use, if missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is missing: install Go 1.26 (https://go.dev/dl)"; exit 1; }
	@pkg-config --exists libdpdk || { echo "pkg-config cannot find libdpdk after installing libdpdk-dev"; exit 1; }

# 1024 × 2 MB hugepages; without them dpfw falls back to --no-huge (eal.hugepages: auto).
hugepages:
	@if [ "$$(id -u)" = 0 ]; then \
		cur=$$(cat /proc/sys/vm/nr_hugepages); [ "$$cur" -ge 1024 ] || echo 1024 > /proc/sys/vm/nr_hugepages; \
		mkdir -p /dev/hugepages; mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages || true; \
	fi
	@grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr '\n' ' '; echo

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/dpfw

# The demo: dpfw on the embedded default (two net_tap ports), two network
# namespaces on either side, ping and an HTTP download through the firewall.
run: build hugepages
	./configs/demo.sh $(BIN)

check-format:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Everything: format, vet, unit tests, race tests, end-to-end DPDK tests
# (net_pcap golden files, net_tap + namespaces), benchmarks once, fuzz smoke.
test: build hugepages check-format vet
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race ./control/config/... ./control/metrics/... ./control/ruleset/... ./control/daemon/... ./control/replay/... ./control/hasync/... ./control/flowexport/... ./conntrack/... ./packet/... ./dataplane/filter/... ./dataplane/rules/... ./internal/...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...
	$(MAKE) perf-smoke
	$(MAKE) fuzz

# The throughput runner once, briefly (its figures mean nothing here): it
# shares the end-to-end harness (internal/e2e) with the tests.
perf-smoke: build
	$(GO) run ./perf -workloads pass,ct -flows 256 -seconds 1 -warmup 1 -rounds 1
	$(GO) run ./perf -rulesets 1000 -rounds 1

test-unit:
	CGO_ENABLED=0 $(GO) test ./packet/... ./dataplane/filter/... ./dataplane/rules/... ./conntrack/... ./control/config/...

# Every fuzz target from its committed seed corpus (testdata/fuzz/NAME in
# its package; plain "go test" replays it too), each for an execution count
# (about 10 s of fuzzing on the 2-core reference machine) unless FUZZTIME is
# given. Counts, not durations, by default: with a wall-clock -fuzztime, Go
# 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when the deadline races a worker's last call (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race. A real failure still
# fails and writes its input to testdata/fuzz/NAME.
FUZZ_TARGETS = packet:FuzzDecode:250000 dataplane:FuzzTrack:15000 \
	control/config:FuzzLoad:60000 dataplane/rules:FuzzParseIptables:200000 \
	conntrack:FuzzTable:100000 conntrack/tcpstate:FuzzUpdate:600000 \
	conntrack/ftp:FuzzParse:300000 control/ruleset:FuzzStructuredRules:40000 \
	packet/header:FuzzSum:500000 control/daemon:FuzzRuleLabels:80000 \
	dataplane:FuzzFragments:20000 dataplane/rules:FuzzApplyEdit:200000 \
	control/ruleset:FuzzParseSetFile:200000 dataplane/filter:FuzzIndexed:20000 \
	control/hasync/wire:FuzzParse:300000 control/hasync:FuzzAuthOpen:100000

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		IFS=: read -r pkg name count <<< "$$t"; \
		budget="$(FUZZTIME)"; [ -n "$$budget" ] || budget="$${count}x"; \
		echo "fuzz $$name ($$pkg, $$budget)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime "$$budget" -timeout 10m ./$$pkg; \
	done

# Copy the inputs the fuzzer found interesting (Go's cache) into the
# committed seed corpora, after a long fuzzing run.
fuzz-corpus:
	@set -e; cache=$$($(GO) env GOCACHE)/fuzz/$$($(GO) list -m); \
	for t in $(FUZZ_TARGETS); do \
		IFS=: read -r pkg name count <<< "$$t"; \
		if [ -d $$cache/$$pkg/$$name ]; then \
			mkdir -p $$pkg/testdata/fuzz/$$name; cp $$cache/$$pkg/$$name/* $$pkg/testdata/fuzz/$$name/; \
			echo "$$pkg/testdata/fuzz/$$name: $$(ls $$pkg/testdata/fuzz/$$name | wc -l) inputs"; \
		fi; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Throughput: dpfw vs dpdk-testpmd on the same net_pcap workload, same run.
perf: build hugepages
	$(GO) run ./perf -workloads pass,ct,churn -flows 1024,65536 -seconds 5

# Profile-guided optimisation: profile dpfw's Go code on the perf
# workloads and write cmd/dpfw/default.pgo, which go build then uses.
pgo: build hugepages
	$(GO) run ./perf -workloads pass,ct1,ct,churn -flows 65536 -seconds 4 -rounds 1 -pgo cmd/dpfw/default.pgo

# Install the binary, the systemd unit (pointing at it), the reference
# config with its rules file, and the README. An existing /etc/dpfw/dpfw.yaml
# or tutorial.rules is never replaced: the bare-metal template also goes
# beside it as dpfw.yaml.example. DESTDIR
# stages a package; PREFIX moves the binary and docs (default /usr/local).
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/dpfw
	install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/dpfw $(DESTDIR)$(PREFIX)/share/doc/dpfw
	sed -e 's|/usr/local/bin/dpfw|$(PREFIX)/bin/dpfw|g' -e 's|file:///usr/share/doc/dpfw/|file://$(PREFIX)/share/doc/dpfw/|' \
		configs/dpfw.service > $(DESTDIR)/etc/systemd/system/dpfw.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/dpfw.service
	install -m 0644 configs/baremetal.yaml $(DESTDIR)/etc/dpfw/dpfw.yaml.example
	[ -e $(DESTDIR)/etc/dpfw/dpfw.yaml ] || install -m 0644 configs/baremetal.yaml $(DESTDIR)/etc/dpfw/dpfw.yaml
	[ -e $(DESTDIR)/etc/dpfw/tutorial.rules ] || install -m 0644 configs/tutorial.rules $(DESTDIR)/etc/dpfw/tutorial.rules
	install -m 0644 configs/reference.yaml $(DESTDIR)$(PREFIX)/share/doc/dpfw/reference.yaml
	install -m 0644 README.md ARCHITECTURE.md $(DESTDIR)$(PREFIX)/share/doc/dpfw/
	rm -rf bin/man && $(BIN) man bin/man
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 bin/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	@echo "installed; edit /etc/dpfw/dpfw.yaml, check it with: dpfw check --config /etc/dpfw/dpfw.yaml; then: systemctl daemon-reload && systemctl enable --now dpfw"

# Remove what install put in place, but the config (/etc/dpfw).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dpfw $(DESTDIR)/etc/systemd/system/dpfw.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/dpfw
	rm -f $(DESTDIR)$(PREFIX)/share/man/man1/dpfw.1 $(DESTDIR)$(PREFIX)/share/man/man1/dpfw-*.1

# A man page per command (dpfw.1, dpfw-rules-insert.1, …) in bin/man,
# from the command tree; make install installs them.
man: build
	rm -rf bin/man && $(BIN) man bin/man

clean:
	rm -rf bin
