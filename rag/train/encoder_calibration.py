"""The texts the int8 embedding model is calibrated on (``rag.openvino_int8``): 300 paragraphs
of the reader's SQuAD training split, shipped in ``rag/models/encoder-calibration/``.

Static int8 quantization sets each activation's range from what the model computes on sample
inputs. These come from training articles only: nothing of the held-out SQuAD articles, of
SciFact or of the evaluation sets, whose figures the int8 encoder is judged by.

    python -m rag.train.encoder_calibration      # writes rag/models/encoder-calibration/
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

from rag.train.squad import load_articles, split_articles

OUT = Path(__file__).resolve().parent.parent / "models" / "encoder-calibration"
FILE = "paragraphs.txt.gz"
ARTICLES = 60  # the first articles of the training split
PARAGRAPHS = 300
SEED = 0


def calibration_paragraphs(
    articles: int = ARTICLES, paragraphs: int = PARAGRAPHS, seed: int = SEED
) -> list[str]:
    """``paragraphs`` paragraphs drawn (seeded) from the first ``articles`` training articles,
    each on one line."""
    train = split_articles(load_articles()).train
    texts = [" ".join(p.context.split()) for a in train[:articles] for p in a.paragraphs]
    random.Random(seed).shuffle(texts)
    return texts[:paragraphs]


def write(folder: Path = OUT) -> Path:
    """Write the calibration file (gzip, fixed timestamp: rebuilding gives the same bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE
    data = ("\n".join(calibration_paragraphs()) + "\n").encode("utf-8")
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    path = write(parser.parse_args().out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
