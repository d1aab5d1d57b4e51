"""The reader's training command: refuses a device it cannot use, before any work; the listwise
ranking term and the grouping it needs."""

from __future__ import annotations

import pytest

from rag.train.reader import main


def test_unknown_device_is_one_error_line(tmp_path, capsys) -> None:
    assert main(["--device", "bogus", "--work", str(tmp_path / "work")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--device" in error and "\n" not in error
    assert not (tmp_path / "work").exists()


def test_cuda_without_a_gpu_is_one_error_line(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["--device", "cuda", "--work", str(tmp_path / "work")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: --device cuda, but torch sees no CUDA device"
    assert not (tmp_path / "work").exists()


def test_grouped_order_keeps_each_question_together() -> None:
    import random

    from rag.train.listwise import grouped_order

    groups = [3, 1, 3, 2, 1, 3, 2, 0]
    order = grouped_order(groups, random.Random(5))
    assert sorted(order) == list(range(len(groups)))
    runs = [groups[i] for i in order]
    assert len([g for k, g in enumerate(runs) if k == 0 or runs[k - 1] != g]) == len(set(groups))


def test_answer_scores_read_the_sentence_tokens_only() -> None:
    torch = pytest.importorskip("torch")
    from rag.train.listwise import answer_scores

    types = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    start = torch.tensor([[1.0, 9.0, 2.0, 4.0, 0.0, 0.0], [0.5, 9.0, 9.0, 1.0, 3.0, 9.0]])
    end = torch.tensor([[2.0, 9.0, 0.0, 1.0, 5.0, 0.0], [1.5, 9.0, 9.0, 2.0, 0.0, 9.0]])
    # row 0: best start 4 + best end 5 - [CLS] 1 + 2; row 1: 3 + 2 - 0.5 - 1.5 (padding ignored)
    assert answer_scores(start, end, types, mask).tolist() == [6.0, 3.0]


def test_listwise_loss_prefers_the_answering_sentence_first() -> None:
    torch = pytest.importorskip("torch")
    from rag.train.listwise import listwise_loss

    groups = torch.tensor([0, 0, 0, 1, 2, 2])
    positive = torch.tensor([False, True, False, True, False, False])
    right = torch.tensor([0.0, 5.0, 1.0, 3.0, 0.0, 0.0], requires_grad=True)
    wrong = torch.tensor([5.0, 0.0, 1.0, 3.0, 0.0, 0.0])
    # only group 0 counts: group 1 has one row, group 2 no answering row
    assert listwise_loss(right, groups, positive) < listwise_loss(wrong, groups, positive)
    loss = listwise_loss(right, groups, positive)
    loss.backward()
    assert right.grad[1] < 0 and right.grad[3] == 0 and right.grad[4] == 0
    assert listwise_loss(right, torch.tensor([0, 1, 2, 3, 4, 5]), positive) is None


def test_pairs_of_one_question_share_a_group() -> None:
    from transformers import AutoTokenizer

    from rag.embeddings import packaged_model_dir
    from rag.train.reader import encode_pairs
    from rag.train.reader_data import Pair

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir(), local_files_only=True)
    pairs = [
        Pair("When did it open?", "Bridge", "It opened in 1990.", (13, 17), "positive"),
        Pair("When did it open?", "Bridge", "It is long.", None, "paragraph"),
        Pair("Who built it?", "Bridge", "It opened in 1990.", None, "paragraph"),
    ]
    rows = encode_pairs(tokenizer, pairs, 96)
    assert [row["group"] for row in rows] == [0, 0, 1]
    assert rows[0]["start"] > 0 and rows[1]["start"] == 0


def test_fast_cpu_settings_train_all_but_the_word_embeddings() -> None:
    """--attention-dropout 0 --freeze-word-embeddings --bf16: one bf16-autocast step moves
    the encoder's weights and leaves the word embeddings as they were."""
    torch = pytest.importorskip("torch")
    from rag.embeddings import packaged_model_dir
    from rag.train.reader import trainable

    model, optimizer = trainable(
        packaged_model_dir(),
        torch.device("cpu"),
        1e-3,
        0.0,
        freeze_word_embeddings=True,
        fused=True,
    )
    assert model.config.attention_probs_dropout_prob == 0.0
    assert model.config.hidden_dropout_prob == 0.1
    words = model.bert.embeddings.word_embeddings.weight
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(p is not words for p in trained)
    assert sum(p.numel() for p in trained) + words.numel() == sum(
        p.numel() for p in model.parameters()
    )
    before_words = words.detach().clone()
    before_query = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    ids = torch.tensor([[101, 2043, 2106, 2009, 102, 2009, 2441, 102]])
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            token_type_ids=torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]]),
            start_positions=torch.tensor([6]),
            end_positions=torch.tensor([6]),
        )
    output.loss.backward()
    optimizer.step()
    assert torch.equal(words, before_words)
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, before_query)
