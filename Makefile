# kmm-day1 developer entry points. The README names two of them:
#   make example   build the static agent + generator, write a MachineConfig from examples/
#   make test      install every test dependency, then run all tests (VM tests included)

CARGO ?= cargo
X86 := x86_64-unknown-linux-musl
ARM := aarch64-unknown-linux-musl
AGENT_X86 := $(CURDIR)/target/$(X86)/release/kmm-day1-agent
AGENT_ARM := $(CURDIR)/target/$(ARM)/release/kmm-day1-agent
GENERATOR := $(CURDIR)/target/release/kmm-day1
# The agent for this machine's architecture.
AGENT_HOST := $(CURDIR)/target/$(shell uname -m)-unknown-linux-musl/release/kmm-day1-agent

# The generator's build script embeds the agents named here (generator/build.rs);
# the integration tests run these same binaries.
export KMM_DAY1_AGENT_X86_64 := $(AGENT_X86)
export KMM_DAY1_AGENT_AARCH64 := $(AGENT_ARM)
export KMM_DAY1_GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: all setup-build setup-test agents generator example test lint unit vm pristine docs install fuzz bench

all: generator

setup-build:
	bash tests/setup.d/00-build.sh

# Every test dependency: one idempotent script per topic under tests/setup.d/.
setup-test:
	apt-get update -qq
	set -e; for s in tests/setup.d/*.sh; do echo "== $$s"; KMM_DAY1_APT_UPDATED=1 bash "$$s"; done

# On nightly (build-std, panic=immediate-abort) when installed, else stable: docs/size.md.
agents: setup-build
	CARGO=$(CARGO) bash agent/build-release.sh $(X86)
	CARGO=$(CARGO) bash agent/build-release.sh $(ARM)
	@ls -l $(AGENT_X86) $(AGENT_ARM)

generator: agents
	$(CARGO) build --release --locked -p kmm-day1

example: generator
	$(GENERATOR) generate --config examples/sfc.toml --pool worker -o sfc-machineconfig.yaml
	@echo "wrote sfc-machineconfig.yaml (apply with: oc create -f sfc-machineconfig.yaml)"

# Clippy builds the generator, whose build script embeds the agents: build them first.
lint: agents
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# The black-box suites (hostile layers, crash, registry faults, …) run the
# static release agent that ships, not the debug build (docs/reliability.md).
unit: agents
	KMM_DAY1_FULL=1 KMM_DAY1_AGENT_UNDER_TEST=$(AGENT_HOST) $(CARGO) test --workspace --locked --no-fail-fast

vm: generator
	KMM_DAY1_FULL=1 KMM_DAY1_GENERATOR=$(GENERATOR) bash tests/vm/run

# The README's `make example` from a pristine Debian 12 root (tests/pristine/run):
# a missing install step fails here even on a machine that has everything.
# After `agents`: the root builds offline from the crates fetched here.
pristine: agents
	bash tests/pristine/run

test: setup-test agents pristine lint docs unit vm fuzz

# Issue 8's figures (not tests): one table; method and latest results in docs/bench.md.
bench: generator
	bash bench/run

# Each cargo-fuzz target of fuzz/ for FUZZ_SECONDS (25) seconds (docs/reliability.md).
fuzz:
	bash tests/fuzz/run

# The book (docs/book.toml, chapters docs/*.md) into target/book. The diagrams
# are rendered from their Graphviz sources first; tests/docs.rs checks that
# the committed SVGs are what `dot` makes of them.
docs:
	set -e; for d in docs/diagrams/*.dot; do dot -Tsvg "$$d" > "$${d%.dot}.svg.tmp"; mv "$${d%.dot}.svg.tmp" "$${d%.dot}.svg"; done
	mdbook build docs

# Binaries, man pages and shell completions under $(DESTDIR)$(PREFIX)
# (docs/install.md). The pages and completions are generated from the CLI
# definitions: clap for kmm-day1, the help texts of agent/src/cli.rs for the
# agent (tools/docgen). The agent installed is the one for this machine.
PREFIX ?= /usr/local
MANUALS := $(CURDIR)/target/manuals
DOCGEN := $(CURDIR)/target/release/kmm-day1-docgen
install: generator
	$(CARGO) build --release --locked -p kmm-day1-docgen
	rm -rf $(MANUALS)
	$(GENERATOR) manpages $(MANUALS)/man1
	$(DOCGEN) $(MANUALS)
	set -e; for s in bash zsh fish; do $(GENERATOR) completions $$s > $(MANUALS)/kmm-day1.$$s; done
	install -Dm755 $(GENERATOR) $(DESTDIR)$(PREFIX)/bin/kmm-day1
	install -Dm755 $(AGENT_HOST) $(DESTDIR)$(PREFIX)/bin/kmm-day1-agent
	install -Dm644 -t $(DESTDIR)$(PREFIX)/share/man/man1 $(MANUALS)/man1/*.1
	install -Dm644 -t $(DESTDIR)$(PREFIX)/share/man/man8 $(MANUALS)/man8/kmm-day1-agent.8
	install -Dm644 $(MANUALS)/kmm-day1.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kmm-day1
	install -Dm644 $(MANUALS)/bash/kmm-day1-agent $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kmm-day1-agent
	install -Dm644 $(MANUALS)/kmm-day1.zsh $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_kmm-day1
	install -Dm644 $(MANUALS)/zsh/_kmm-day1-agent $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_kmm-day1-agent
	install -Dm644 $(MANUALS)/kmm-day1.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kmm-day1.fish
	install -Dm644 $(MANUALS)/fish/kmm-day1-agent.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kmm-day1-agent.fish
