# All set-up happens here: a fresh machine needs only python3.11, make and the package registries.
VENV := .venv
BIN := $(VENV)/bin
# What the farm's tests need beside Python, from Debian: a real sshd for the ssh devices, the adb client, a
# PostgreSQL server for the shared results store, the system python3 a board's runtime-only venv is made of.
SYSTEM_PACKAGES := openssh-server openssh-client adb postgresql python3

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: setup system-packages build test test-slow bench
setup: $(BIN)/.installed

system-packages:  ## installed with apt-get (as root) only when one is missing
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "install these Debian packages first: $(SYSTEM_PACKAGES)"; exit 1; fi; \
	fi

build: $(BIN)/.installed  ## the main job: build the bundled model for this host's CPU, then check it here
	$(BIN)/llamaport build --out bundle --overwrite
	$(BIN)/llamaport check bundle --baseline-model compile/default_model

test: $(BIN)/.installed system-packages  ## the default suite (CI runs this)
	$(BIN)/pytest -q

test-slow: $(BIN)/.installed system-packages  ## long end-to-end tests
	$(BIN)/pytest -q -m slow

bench: $(BIN)/.installed
	$(BIN)/python bench/decode_speed.py
	$(BIN)/python bench/onnx_decode_speed.py
	$(BIN)/python bench/executorch_export_speed.py
	$(BIN)/python bench/gptq_vs_rounding.py
	$(BIN)/python bench/executorch_recipe_parity.py
	$(BIN)/python bench/golden_kld_exactness.py
	$(BIN)/python bench/build_memory.py
	$(BIN)/python bench/kv_cache_int8.py
