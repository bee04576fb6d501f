# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: setup run test lint format

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Set up, migrate, load content and demo data, and run the service on the embedded defaults.
run: setup
	$(BIN)/flask --app wsgi db upgrade
	@if $(BIN)/flask --app wsgi modules --help >/dev/null 2>&1; then $(BIN)/flask --app wsgi modules sync; fi
	$(BIN)/flask --app wsgi demo seed
	$(BIN)/flask --app wsgi run --host 127.0.0.1 --port $(PORT)

## Set up and run ruff and the whole suite on SQLite, then on PostgreSQL if TEST_DATABASE_URL is set.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:cacheprovider
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== again on PostgreSQL: $$TEST_DATABASE_URL"; \
		COACHING_TEST_DATABASE_URL="$$TEST_DATABASE_URL" $(BIN)/python -m pytest -q -p no:cacheprovider; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
