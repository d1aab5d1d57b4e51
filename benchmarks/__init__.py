"""Benchmarks of the rag bot: retrieval quality on SciFact, ingest and retrieval speed,
answer latency with the default local LLM, UI startup.

Run ``python -m benchmarks.run [--quick]`` (``make bench`` / ``make bench-quick``); results go to
``benchmarks/results/latest.json`` and ``BENCHMARKS.md``. Speed targets live here, never in
unit tests.
"""
