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
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev,clip,shards,asr,torchcodec,svilm,tensorboard,faiss,browser]"
	@# Debian packages, optional (their tests skip without them): espeak-ng speaks the test sentence of the
	@# transcription test; ffmpeg brings the shared libraries the torchcodec backend loads.
	-@{ command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq >/dev/null && apt-get install -y -qq espeak-ng ffmpeg >/dev/null; } || echo "espeak-ng/ffmpeg not installed: their tests will be skipped"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/tvts main --config demo $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q $(ARGS)

clean:
	rm -rf runs data/narrated_shapes
