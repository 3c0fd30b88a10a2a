# smtpfront: `make run` starts a demo service, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FUZZ_RUNS ?= 100

.PHONY: venv test fuzz lint man run demo bench clean

$(BIN)/smtpfront-qmail: pyproject.toml $(wildcard man/*.[0-9])
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || ./examples/demo/install-packages python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -q -e '.[test]'
	@# setuptools' editable installs skip data files (it asks for has_data, not has_data_files): the pages by hand
	for page in man/*.[0-9]; do install -D -m 644 $$page $(VENV)/share/man/man$${page##*.}/$${page#man/}; done
	$(BIN)/smtpfront-launchers $(BIN) >/dev/null  # -I -S launchers in place of pip's scripts
	touch $@

venv: $(BIN)/smtpfront-qmail

test: venv
	$(BIN)/ruff check src tests bench tools
	$(BIN)/pytest --hypothesis-profile=ci

# the property tests only, FUZZ_RUNS times, each with a fresh random seed (a failure prints how to replay it)
fuzz: venv
	for run in $$(seq $(FUZZ_RUNS)); do $(BIN)/pytest -m hypothesis --hypothesis-profile=fuzz || exit 1; done

lint: venv
	$(BIN)/ruff check src tests bench tools

# the manual pages from their sources, docs/NAME.N.md -> man/NAME.N (commit both)
man:
	$(PYTHON) tools/md2man.py

run: venv
	./examples/demo/run-demo

demo: venv
	./examples/demo/send-demo

bench: venv
	$(BIN)/python bench/run.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/softlimit.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/rbl.py
	$(BIN)/python bench/scanners.py

clean:
	rm -rf $(VENV) var build src/*.egg-info
