"""The reader's training command refuses a device it cannot use, before any work."""

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
