"""benchmarks/gpu.py runs end to end (``--smoke``: tiny sizes on the CPU), so the one
command a person with a GPU runs cannot rot where no GPU is; and its MFU arithmetic."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_smoke_run_writes_every_row(tmp_path, capsys):
    gpu = load_script()
    out = tmp_path / "gpu.md"
    assert gpu.main(["--smoke", "--output", str(out)]) == 0
    text = out.read_text()
    for row in ("ResNet-50 training", "GPT-124M training, zoo attention", "GPT-124M training, SDPA",
                "YOLOv2 inference", "trainer vs hand loop", "DDP / FSDP / SyncBatchNorm on 2 GPUs"):
        assert f"| {row}" in text, row
    assert "failed:" not in text and "not how fast" in text


def test_mfu_arithmetic_and_peaks():
    gpu = load_script()
    # nanoGPT's 124M: N = 85M non-embedding... here all weights but the position table
    L, H, Q, T = 12, 12, 64, 1024
    assert gpu.gpt_flops_per_token(124_000_000, L, H, Q, T) == 6 * 124e6 + 12 * L * H * Q * T
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("Some Future GPU") is None


def test_sdpa_attention_matches_the_zoo_attention():
    import torch

    from zoo.layers.attention import attention, causal_mask

    gpu = load_script()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    m = causal_mask(7, 7)
    torch.testing.assert_close(gpu.sdpa_attention(q, k, v, m), attention(q, k, v, m), rtol=1e-5, atol=1e-6)


def test_without_cuda_the_full_run_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    gpu = load_script()
    assert gpu.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device")
