# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Portable llama.cpp build: AVX2 baseline, no -march=native (which can emit instructions,
# such as AMX tiles, that a VM advertises but does not allow).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install run ingest serve test test-fast lint format bench bench-quick clean \
	train-reader calibrate-reader encoder-calibration heldout eval-heldout eval-gate

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q "llama-cpp-python>=0.3.8,<0.4"
	$(PIP) install -q -e ".[dev]"
	$(PY) -m rag.doctor
	touch $(STAMP)

ingest: install
	$(VENV)/bin/rag ingest seeds/

run: ingest
	$(VENV)/bin/rag serve

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow and not browser"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m benchmarks.run

bench-quick: install
	$(PY) -m benchmarks.run --quick

# The reader model (rag/models/reader): trained on SQuAD's training split (../shared/train/squad,
# or RAG_SQUAD_DIR) in two seeded, resumable stages (checkpoints in build/reader*): the first
# READER_STAGE1 sampled questions from the base encoder, then the next ones up to
# READER_QUESTIONS from that model at half the learning rate; then calibrated on the held-out
# validation articles. About 110 minutes on 2 cores.
READER_STAGE1 ?= 24000
READER_QUESTIONS ?= 40000
# cuda on a GPU machine (bf16 autocast); the shipped model was trained on cpu.
READER_DEVICE ?= cpu
train-reader: install
	$(PY) -m rag.train.reader --device $(READER_DEVICE) --questions $(READER_STAGE1) \
	  --work build/reader --out build/reader/stage1
	$(PY) -m rag.train.reader --device $(READER_DEVICE) --init build/reader/stage1 \
	  --skip-questions $(READER_STAGE1) \
	  --questions $(READER_QUESTIONS) --lr 4e-5 --work build/reader2 --out rag/models/reader
	$(PY) -m rag.train.selection --reader rag/models/reader
	$(PY) -m rag.train.calibrate --reader rag/models/reader

calibrate-reader: install
	$(PY) -m rag.train.selection --reader rag/models/reader
	$(PY) -m rag.train.calibrate --reader rag/models/reader

# The texts OpenVINO's static int8 embedding model is calibrated on (made at first use from
# them; rag/models/encoder-calibration/README.md): 300 SQuAD training-split paragraphs.
encoder-calibration: install
	$(PY) -m rag.train.encoder_calibration

# Held-out question sets (answerable, adversarial, out-of-corpus) over SQuAD articles that
# training never saw; eval-heldout reports on the test split (HELDOUT_SPLIT=test-sectioned:
# the same articles as sections of four long documents).
heldout: install
	$(PY) -m rag.train.heldout --out build/heldout

HELDOUT_LLM ?=
HELDOUT_SPLIT ?= test
HELDOUT_DIR := build/heldout/$(HELDOUT_SPLIT)
eval-heldout: heldout
	$(VENV)/bin/rag ingest $(HELDOUT_DIR)/corpus --index $(HELDOUT_DIR)/index
	for set in answerable adversarial outside; do \
	  $(VENV)/bin/rag eval $(HELDOUT_DIR)/$$set.yaml --index $(HELDOUT_DIR)/index \
	    $(if $(HELDOUT_LLM),--llm $(HELDOUT_LLM)) --json $(HELDOUT_DIR)/$$set.json || exit 1; \
	done

# CI's quality gate: the seed, handbook, held-out test and README sets with the default LLM, each bound
# at the level measured when the reader landed, less a small margin (README "Quality").
GATE := build/gate
RAG := $(VENV)/bin/rag
eval-gate: heldout
	$(RAG) ingest seeds --index $(GATE)/seed >/dev/null
	$(RAG) eval evals/seed.yaml --index $(GATE)/seed --json $(GATE)/seed.json \
	  --fail-under answer_accuracy=0.89,refusal_accuracy=0.4,citation_accuracy=0.93 \
	  --fail-over false_refusal_rate=0.11,uncited_sentence_rate=0
	$(RAG) ingest evals/corpora/handbook --index $(GATE)/handbook >/dev/null
	$(RAG) eval evals/handbook.yaml --index $(GATE)/handbook --json $(GATE)/handbook.json \
	  --fail-under answer_accuracy=0.66,refusal_accuracy=0.28,citation_accuracy=0.84 \
	  --fail-over false_refusal_rate=0.14,uncited_sentence_rate=0
	$(RAG) ingest build/heldout/test/corpus --index $(GATE)/heldout >/dev/null
	$(RAG) eval build/heldout/test/answerable.yaml --index $(GATE)/heldout \
	  --json $(GATE)/answerable.json --fail-under answer_accuracy=0.80,citation_accuracy=0.80 \
	  --fail-over false_refusal_rate=0.06,uncited_sentence_rate=0
	$(RAG) eval build/heldout/test/adversarial.yaml --index $(GATE)/heldout \
	  --json $(GATE)/adversarial.json --fail-under refusal_accuracy=0.28
	$(RAG) eval build/heldout/test/outside.yaml --index $(GATE)/heldout \
	  --json $(GATE)/outside.json --fail-under refusal_accuracy=0.88
	$(RAG) ingest evals/corpora/readmes/validation --index $(GATE)/readmes-validation >/dev/null
	$(RAG) eval evals/readmes-validation.yaml --index $(GATE)/readmes-validation \
	  --json $(GATE)/readmes-validation.json \
	  --fail-under answer_accuracy=0.74,refusal_accuracy=0.16,citation_accuracy=0.78 \
	  --fail-over false_refusal_rate=0.09,uncited_sentence_rate=0
	$(RAG) ingest evals/corpora/readmes/test --index $(GATE)/readmes-test >/dev/null
	$(RAG) eval evals/readmes-test.yaml --index $(GATE)/readmes-test \
	  --json $(GATE)/readmes-test.json \
	  --fail-under answer_accuracy=0.68,refusal_accuracy=0.23,citation_accuracy=0.72 \
	  --fail-over false_refusal_rate=0.09,uncited_sentence_rate=0
	$(RAG) eval evals/readmes-paraphrase-validation.yaml --index $(GATE)/readmes-validation \
	  --json $(GATE)/readmes-paraphrase-validation.json \
	  --fail-under answer_accuracy=0.68,refusal_accuracy=0.08,citation_accuracy=0.75 \
	  --fail-over false_refusal_rate=0.09,uncited_sentence_rate=0
	$(RAG) eval evals/readmes-paraphrase-test.yaml --index $(GATE)/readmes-test \
	  --json $(GATE)/readmes-paraphrase-test.json \
	  --fail-under answer_accuracy=0.66,refusal_accuracy=0.46,citation_accuracy=0.72 \
	  --fail-over false_refusal_rate=0.14,uncited_sentence_rate=0
	$(PY) evals/as_chats.py evals/readmes-test.yaml $(GATE)/readmes-test-chats.yaml
	$(RAG) eval $(GATE)/readmes-test-chats.yaml --index $(GATE)/readmes-test \
	  --json $(GATE)/readmes-test-chats.json \
	  --fail-under answer_accuracy=0.66,refusal_accuracy=0.23,citation_accuracy=0.69 \
	  --fail-over false_refusal_rate=0.09,uncited_sentence_rate=0
	$(RAG) ingest evals/corpora/readmes-rst/validation --index $(GATE)/readmes-rst-validation >/dev/null
	$(RAG) eval evals/readmes-rst-validation.yaml --index $(GATE)/readmes-rst-validation \
	  --json $(GATE)/readmes-rst-validation.json \
	  --fail-under answer_accuracy=0.56,refusal_accuracy=0.21,citation_accuracy=0.74 \
	  --fail-over false_refusal_rate=0.13,uncited_sentence_rate=0
	$(RAG) ingest evals/corpora/readmes-rst/test --index $(GATE)/readmes-rst-test >/dev/null
	$(RAG) eval evals/readmes-rst-test.yaml --index $(GATE)/readmes-rst-test \
	  --json $(GATE)/readmes-rst-test.json \
	  --fail-under answer_accuracy=0.50,refusal_accuracy=0.46,citation_accuracy=0.64 \
	  --fail-over false_refusal_rate=0.13,uncited_sentence_rate=0

clean:
	rm -rf $(VENV) index/* data reports .pytest_cache .ruff_cache
