# onair: `make run` starts a node on its defaults, `make test` runs the whole suite. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := ffmpeg libsrt1.5-gnutls
STAMP := $(VENV)/.installed

.PHONY: run cluster test bench soak lint fuzz deps system-deps clean

run: deps
	$(BIN)/onair serve

# Three nodes (a, b, c) sharing PostgreSQL and Redis, and the nginx caching edge, on this machine
# (onair/app/cluster.py; README "Scaling out"). Ctrl-C stops them all.
cluster: deps
	$(BIN)/python -m onair.app.cluster

test: deps test-deps
	$(BIN)/ruff check onair tests bench fuzz
	$(BIN)/mypy onair
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: deps
	$(BIN)/python -m bench

# A bounded soak (bench/soak.py): 4 live streams with viewers, API churn, reconnects and recordings for
# SOAK_MINUTES (default 30); fails on growth of RSS/fds/asyncio tasks over 5 %, any 5xx or a lost recording.
# Not part of `make bench`.
SOAK_MINUTES ?= 30
soak: deps
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m bench.soak

lint: deps
	$(BIN)/ruff check onair tests bench fuzz
	$(BIN)/mypy onair
	$(BIN)/lint-imports

deps: system-deps $(STAMP)

# Debian packages: installed only when a binary or library is missing, so reruns are instant.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	ls /usr/lib/*/libsrt-gnutls.so.1.5* >/dev/null 2>&1 || missing="$$missing libsrt1.5-gnutls"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The other encoders and players of the player x encoder matrix (tests/test_player_matrix.py): GStreamer 1.22
# (rtmp2sink, rtmpsink, srtsink; playbin3 with hlsdemux2/dashdemux2) and srt-live-transmit, installed only when
# a plugin or binary is missing.
GST_PLUGINS := /usr/lib/$(shell uname -m)-linux-gnu/gstreamer-1.0
.PHONY: test-deps
test-deps:
	@missing=""; \
	command -v gst-launch-1.0 >/dev/null || missing="$$missing gstreamer1.0-tools"; \
	[ -f $(GST_PLUGINS)/libgstplayback.so ] || missing="$$missing gstreamer1.0-plugins-base"; \
	[ -f $(GST_PLUGINS)/libgstrtmp2.so ] || missing="$$missing gstreamer1.0-plugins-bad"; \
	[ -f $(GST_PLUGINS)/libgstadaptivedemux2.so ] || missing="$$missing gstreamer1.0-plugins-good"; \
	[ -f $(GST_PLUGINS)/libgstx264.so ] || missing="$$missing gstreamer1.0-plugins-ugly"; \
	[ -f $(GST_PLUGINS)/libgstlibav.so ] || missing="$$missing gstreamer1.0-libav"; \
	command -v srt-live-transmit >/dev/null || missing="$$missing srt-tools"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) data

# The web player's browser libraries (hls.js, dash.js) come from npm into node_modules/ (not the repo), and
# the player tests and benchmarks drive Debian's Chromium through Playwright (never `playwright install`).
.PHONY: player-deps browser-deps
deps: player-deps browser-deps
player-deps: node_modules/.stamp

node_modules/.stamp: package.json $(wildcard package-lock.json)
	@command -v npm >/dev/null || { echo "installing Debian packages: nodejs npm"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; \
	else npm install --no-audit --no-fund --loglevel=error; fi
	touch $@

browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian packages: chromium"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# Coverage-guided fuzzing (atheris) of every parser of outside bytes, 5 minutes per target; `make test`
# runs the same targets for seconds (tests/test_fuzz.py). FUZZ_ARGS e.g. "--jobs 2 rtmp_chunks amf0".
fuzz: deps
	$(BIN)/python -m fuzz --seconds 300 $(FUZZ_ARGS)

# The baselines of bench/ingest.py and bench/playback.py: Debian's nginx and libnginx-mod-rtmp (installed
# only when missing; the benchmarks start their own nginx with a generated config, never the system service).
.PHONY: bench-deps
bench: bench-deps
bench-deps:
	@if [ ! -x /usr/sbin/nginx ] || [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then \
	  echo "installing Debian packages: nginx libnginx-mod-rtmp"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx libnginx-mod-rtmp >/dev/null; \
	fi
