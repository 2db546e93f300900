# make serve   install (first time) and start the server on http://127.0.0.1:8000
# make test    install (first time) and run the whole test suite
.PHONY: install serve test bench

.venv/.installed: pyproject.toml scripts/install.sh
	./scripts/install.sh
	touch $@

install: .venv/.installed

serve: install
	.venv/bin/moonserve serve

test: install
	./scripts/test.sh

bench: install
	cd bench && ../.venv/bin/python run_all.py
