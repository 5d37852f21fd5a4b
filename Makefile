# All set-up happens here: a fresh machine needs only python3.11, make and the package registries
# (the farm's tests also need openssh-server, adb and postgresql from Debian: .ci/run installs them).
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: setup build test test-slow bench
setup: $(BIN)/.installed

build: $(BIN)/.installed  ## the main job: build the bundled model for this host's CPU, then check it here
	$(BIN)/llamaport build --out bundle --overwrite
	$(BIN)/llamaport check bundle --baseline-model compile/default_model

test: $(BIN)/.installed  ## the default suite (CI runs this)
	$(BIN)/pytest -q

test-slow: $(BIN)/.installed  ## long end-to-end tests
	$(BIN)/pytest -q -m slow

bench: $(BIN)/.installed
	$(BIN)/python bench/decode_speed.py
	$(BIN)/python bench/onnx_decode_speed.py
