# Two entry points (see README): `make run` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install sandbox lint typecheck unit integration services bench chaos clean

run: install sandbox
	$(VENV)/bin/computalot up

test: install sandbox services lint typecheck
	$(PY) -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

# The task sandbox (docs/sandbox.md): bubblewrap confines every runner, nftables keeps tasks away
# from the platform's ports, setpriv (util-linux) drops root. Installed here when missing and we
# may use apt; `computalot up` and GET /ready say loudly what is still missing.
sandbox:
	@if ! command -v bwrap >/dev/null 2>&1 || ! { command -v nft >/dev/null 2>&1 || test -x /usr/sbin/nft; }; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing bubblewrap and nftables from Debian's packages"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap nftables util-linux >/dev/null) \
			|| echo "WARNING: could not install bubblewrap/nftables; tasks cannot be confined"; \
		else \
			echo "WARNING: bubblewrap or nftables is missing and cannot be installed here (see docs/sandbox.md)"; \
		fi; \
	fi

# PostgreSQL (Debian's package) backs the store tests; the test session starts a throwaway
# cluster from its binaries. curl runs the seed's Quickstart verbatim. Installed here when
# missing and we may use apt.
services:
	@if ! command -v curl >/dev/null 2>&1 && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null) \
		|| echo "WARNING: could not install curl; the curl Quickstart test will be skipped"; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "WARNING: could not install chromium; the live job page browser tests will be skipped"; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing PostgreSQL from Debian's packages"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
			|| echo "WARNING: could not install postgresql; PostgreSQL store tests will be skipped"; \
		else \
			echo "WARNING: PostgreSQL is not installed and cannot be installed here; its tests will be skipped"; \
		fi; \
	fi
	@if ! [ -d /usr/share/cargo/registry/rand_distr-0.4.3 ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the prop_amm recipe's Rust crates from Debian's packages"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librust-rand-dev librust-rand-distr-dev librust-rand-pcg-dev librust-syn-dev librust-quote-dev librust-proc-macro2-dev >/dev/null) \
		|| echo "WARNING: could not install the librust-*-dev crates; prop_amm tests will be skipped"; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy computalot serve_app

unit: install
	$(PY) -m pytest tests/unit

integration: install services
	$(PY) -m pytest tests/integration

# The long chaos and fuzz suites (docs/chaos.md): 50 SIGKILLs in a 500-task workload, the whole
# platform SIGKILLed and restarted with 100 jobs in flight, 2,000+ schemathesis requests. Their
# short versions run in `make test`; -s prints the figures.
chaos: install sandbox services
	CHAOS=long $(PY) -m pytest tests/chaos -s -q

bench: install
	$(PY) bench/api_throughput.py
	$(PY) bench/dispatch.py

clean:
	rm -rf $(VENV) .computalot .pytest_cache .mypy_cache .ruff_cache
