# kmm-day1 developer entry points. The README names two of them:
#   make example   build the static agent + generator, write a MachineConfig from examples/
#   make test      install every test dependency, then run all tests (VM tests included)

CARGO ?= cargo
X86 := x86_64-unknown-linux-musl
ARM := aarch64-unknown-linux-musl
AGENT_X86 := $(CURDIR)/target/$(X86)/release/kmm-day1-agent
AGENT_ARM := $(CURDIR)/target/$(ARM)/release/kmm-day1-agent
GENERATOR := $(CURDIR)/target/release/kmm-day1

# The generator's build script embeds the agents named here (generator/build.rs);
# the integration tests run these same binaries.
export KMM_DAY1_AGENT_X86_64 := $(AGENT_X86)
export KMM_DAY1_AGENT_AARCH64 := $(AGENT_ARM)
export KMM_DAY1_GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: all setup-build setup-test agents generator example test lint unit vm

all: generator

setup-build:
	bash tests/setup.d/00-build.sh

# Every test dependency: one idempotent script per topic under tests/setup.d/.
setup-test:
	apt-get update -qq
	set -e; for s in tests/setup.d/*.sh; do echo "== $$s"; KMM_DAY1_APT_UPDATED=1 bash "$$s"; done

agents: setup-build
	$(CARGO) build --release --locked -p kmm-day1-agent --target $(X86)
	$(CARGO) build --release --locked -p kmm-day1-agent --target $(ARM)
	@ls -l $(AGENT_X86) $(AGENT_ARM)

generator: agents
	$(CARGO) build --release --locked -p kmm-day1

example: generator
	$(GENERATOR) generate --config examples/sfc.toml --pool worker -o sfc-machineconfig.yaml
	@echo "wrote sfc-machineconfig.yaml (apply with: oc create -f sfc-machineconfig.yaml)"

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: agents
	KMM_DAY1_FULL=1 $(CARGO) test --workspace --locked

vm: agents
	bash tests/vm/run

test: setup-test lint unit vm
