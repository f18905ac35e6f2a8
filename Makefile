# Trident: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export TRIDENT_DATA_DIR ?= $(abspath ../shared/datasets)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint artifacts bench soak clean

setup: $(VENV)/.installed

# torch is pinned to the exact CPU build (2.13.0) that pip finds locally; any other version pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,pretrained]'
	touch $@

demo: setup
	$(BIN)/trident suite up

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

# Trains every benchmark artifact from TRIDENT_DATA_DIR into artifacts/, skipping those already there. The ensembles
# of cs and fin are teachers (artifacts/teachers/, offline only); each served artifact holds one student distilled from
# its teacher (its number of layers: CS_DISTIL__LAYERS, FIN_DISTIL__LAYERS; bench/distil_students.py measures them).
artifacts: setup
	$(BIN)/trident core artifacts
	test -f artifacts/teachers/cs/config.json || $(BIN)/trident cs train --full-intents 2 --refit-epochs 8 --intents $(TRIDENT_DATA_DIR)/banking77/train.csv \
		--pairs-queries $(TRIDENT_DATA_DIR)/stackfaq/queries_dev.jsonl \
		--pairs-kb $(TRIDENT_DATA_DIR)/stackfaq/faq_threads.jsonl --out artifacts/teachers/cs
	test -f artifacts/cs/intents-student/config.json || $(BIN)/trident cs distil --teacher artifacts/teachers/cs \
		--intents $(TRIDENT_DATA_DIR)/banking77/train.csv --test $(TRIDENT_DATA_DIR)/banking77/test_dev.csv \
		--unlabelled $(TRIDENT_DATA_DIR)/stackfaq/faq_threads.jsonl $(TRIDENT_DATA_DIR)/stackfaq/queries_dev.jsonl --out artifacts/cs
	test -f artifacts/teachers/fin/config.json -o -f artifacts/teachers/fin/ensemble.json || $(BIN)/trident fin train --members 5 --refit-epochs 5 --out artifacts/teachers/fin
	grep -qs '"distillation"' artifacts/fin/config.json || $(BIN)/trident fin distil --teacher artifacts/teachers/fin \
		--unlabelled $(TRIDENT_DATA_DIR)/finance_feeds --out artifacts/fin
	test -f artifacts/fin-risk/config.json || $(BIN)/trident fin risk --out artifacts/fin-risk
	test -f artifacts/rec/config.json || $(BIN)/trident rec train --data $(TRIDENT_DATA_DIR)/movielens-100k --out artifacts/rec

bench: setup
	mkdir -p bench/results
	$(BIN)/python bench/core.py --out bench/results/core.json
	$(BIN)/python bench/customer_service.py --out bench/results/customer_service.json
	$(BIN)/python bench/finance.py --out bench/results/finance.json
	$(BIN)/python bench/explain.py --out bench/results/explain.json
	$(BIN)/python bench/recommender.py --out bench/results/recommender.json
	$(BIN)/python bench/runtime.py --out bench/results/runtime.json

# The suite under load for 3 minutes (docs/deploy.md#soak-test): PostgreSQL by default, SOAK_FLAGS=--sqlite for SQLite.
soak: setup
	mkdir -p bench/results
	$(BIN)/python bench/soak.py --out bench/results/soak.json $(SOAK_FLAGS)

clean:
	rm -rf var/demo .pytest_cache .ruff_cache
