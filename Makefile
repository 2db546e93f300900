# make serve   install what serving needs (first time) and start the server on http://127.0.0.1:8000
# make test    install the test tools too (first time) and run the whole test suite
.PHONY: install install-test-tools serve test bench docs

.venv/.installed: pyproject.toml scripts/install.sh
	./scripts/install.sh
	touch $@

.venv/.test-tools: .venv/.installed scripts/install_test_tools.sh tests/agents/package.json tests/node/package.json
	./scripts/install_test_tools.sh
	touch $@

install: .venv/.installed

install-test-tools: .venv/.test-tools

serve: install
	.venv/bin/moonserve serve

test: install-test-tools
	./scripts/test.sh

bench: install-test-tools
	cd bench && ../.venv/bin/python run_all.py

docs: install-test-tools
	.venv/bin/mkdocs build --strict
