# modelwatch: `make demo` and `make test` are the two commands in the README.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MODELWATCH_ROOT := $(CURDIR)
export AIRFLOW_HOME := $(CURDIR)/.modelwatch/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(CURDIR)/.modelwatch/airflow/airflow.db
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/.modelwatch/mlflow.db

.PHONY: venv demo test test-integration test-celery lint bench airflow mlflow clean

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	rm -rf include/modelwatch.egg-info  # setuptools' build leftover: on sys.path it is a second "modelwatch" distribution
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m modelwatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not integration"
	$(BIN)/python -m pytest -q -m "integration and not celery"

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -m "integration and not celery"

# CeleryExecutor, two workers, the machine's Redis and PostgreSQL (README, "Scaling out"); .ci/run runs it too.
test-celery: $(STAMP)
	$(BIN)/python -m pytest -q -s -m celery tests/integration/test_celery.py

bench: $(STAMP)
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_drift.py
	$(BIN)/python bench/bench_tracking.py
	$(BIN)/python bench/bench_scale.py --celery  # parse time at 10/40/100 monitors; windows/min per Celery slot
	$(BIN)/python bench/bench_evaluation.py  # whole evaluation vs NannyML/Evidently/pandas/one scan; PostgreSQL rows read per prediction

airflow: $(STAMP)
	@mkdir -p $(AIRFLOW_HOME)
	@echo "Airflow UI: http://localhost:8080  (user 'admin'; password printed below / in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	PATH="$(CURDIR)/$(BIN):$$PATH" airflow standalone  # standalone starts its components as `airflow`

mlflow: $(STAMP)
	@echo "MLflow UI: http://127.0.0.1:5000"
	PATH="$(CURDIR)/$(BIN):$$PATH" mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

clean:
	rm -rf .modelwatch
