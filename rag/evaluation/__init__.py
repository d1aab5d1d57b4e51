"""Scripted evaluation: question sets, deterministic metrics, comparisons, BEIR retrieval eval.

Every metric is computed offline and deterministically from the answers the pipeline returns;
no LLM judges anything. Two evaluations live here:

- ``rag eval``: a question set (YAML or JSONL; see :func:`load_question_set`) is run against the
  index — conversations turn by turn, with the system's own earlier answers as history — and each
  answer is checked against the expected strings, the evidence and its citations.
- ``rag eval-retrieval``: a BEIR-format dataset is ingested into its own collection and ranked by
  the dense, BM25 and fused retrievers; nDCG@k, Recall@100 and MRR@k are reported.

Metric conventions (also in README "Evaluation"):

- A metric with no eligible items is ``None`` (null in JSON), never 0.
- Answers match ``expected`` case-insensitively with whitespace collapsed; an alternative must
  start at a word boundary, and one ending in a digit must also end at one ('90' does not
  match '1990' or '900', 'drone' matches 'drones'). Citation markers are ignored.
- Evidence matches a chunk's text whitespace- and case-normalised (and only chunks of the item's
  ``source`` when one is given).
- "Answered" means not refused and a non-empty answer: refused or empty answers do not count for
  ``citation_accuracy`` and ``uncited_sentence_rate``; an empty answer is a wrong answer.
"""

from rag.evaluation.beir import (
    MODES,
    RECALL_DEPTH,
    BeirDataset,
    BeirResult,
    RetrievalMode,
    beir_cache_dir,
    beir_collection_name,
    dcg,
    doc_filename,
    evaluate_beir,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    rank_documents,
    recall_at_k,
    write_corpus_files,
)
from rag.evaluation.compare import (
    Bound,
    Comparison,
    MetricDelta,
    check_bounds,
    compare_runs,
    load_run,
    parse_bounds,
)
from rag.evaluation.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    RATE_METRICS,
    compute_metrics,
    percentile,
)
from rag.evaluation.questions import (
    Case,
    Conversation,
    EvalItem,
    EvaluationError,
    ExpectedGroups,
    Question,
    QuestionSet,
    load_question_set,
)
from rag.evaluation.runner import (
    CONFIG_FIELDS,
    EvalRun,
    ItemCallback,
    results_llm_label,
    run_evaluation,
    settings_summary,
    version,
)
from rag.evaluation.scoring import (
    ItemResult,
    answer_sentences,
    contains_evidence,
    count_sentences,
    matches_alternative,
    missing_groups,
    normalise,
    score_item,
    source_matches,
)

__all__ = [
    "CONFIG_FIELDS",
    "LOWER_IS_BETTER",
    "METRICS",
    "MODES",
    "RATE_METRICS",
    "RECALL_DEPTH",
    "BeirDataset",
    "BeirResult",
    "Bound",
    "Case",
    "Comparison",
    "Conversation",
    "EvalItem",
    "EvalRun",
    "EvaluationError",
    "ExpectedGroups",
    "ItemCallback",
    "ItemResult",
    "MetricDelta",
    "Question",
    "QuestionSet",
    "RetrievalMode",
    "answer_sentences",
    "beir_cache_dir",
    "beir_collection_name",
    "check_bounds",
    "compare_runs",
    "compute_metrics",
    "contains_evidence",
    "count_sentences",
    "dcg",
    "doc_filename",
    "evaluate_beir",
    "load_beir",
    "load_question_set",
    "load_run",
    "matches_alternative",
    "missing_groups",
    "mrr_at_k",
    "ndcg_at_k",
    "normalise",
    "parse_bounds",
    "percentile",
    "rank_documents",
    "recall_at_k",
    "results_llm_label",
    "run_evaluation",
    "score_item",
    "settings_summary",
    "source_matches",
    "version",
    "write_corpus_files",
]
