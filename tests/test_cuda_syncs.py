"""The GPU path: LocoProp's inner loop makes no host synchronisation (run by scripts/gpu_check.sh on CUDA)."""

import warnings

import pytest
import torch

from layerwise import LocoProp
from layerwise.models import deep_autoencoder, sigmoid_cross_entropy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _syncs_in_one_step(steps: int, inner_dtype: torch.dtype | None, chunks: int = 1) -> int:
    """Synchronising CUDA calls torch reports during the second LocoProp step (the first verifies the layers)."""
    model = deep_autoencoder(784, generator=torch.Generator().manual_seed(0)).cuda()
    x = torch.rand(256, 784, device="cuda")
    opt = LocoProp(model, lr=1e-4, steps=steps, inner_dtype=inner_dtype, inner_chunks=chunks)
    opt.step(lambda: sigmoid_cross_entropy(model(x), x))
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            opt.step(lambda: sigmoid_cross_entropy(model(x), x))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize(("inner_dtype", "chunks"), [(None, 1), (torch.bfloat16, 1), (torch.bfloat16, 4)])
def test_host_syncs_per_step_do_not_grow_with_the_inner_steps(inner_dtype: torch.dtype | None, chunks: int) -> None:
    one, ten = _syncs_in_one_step(chunks, inner_dtype, chunks), _syncs_in_one_step(10, inner_dtype, chunks)
    assert ten == one, f"{ten} synchronising calls at T=10 against {one} at T={chunks}: the inner loop syncs"
    assert 1 <= one <= 2, one  # the outer step's finiteness check of the loss (>= 1: the count itself works)
