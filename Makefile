# Two commands do everything on a fresh machine (see README):
#   make demo   install, then run the main job (embedded dataset -> pretrain -> evaluate -> report)
#   make test   install, then run the test suite (.ci/run calls exactly this)
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
ARGS   ?=

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev,clip,shards]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/tvts main --config demo $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q $(ARGS)

clean:
	rm -rf runs data/narrated_shapes
