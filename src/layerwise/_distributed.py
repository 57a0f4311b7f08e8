"""The collective operations LocoProp needs under data parallelism (any ``torch.distributed`` backend)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["CollectiveFailure", "all_reduce_mean", "all_reduce_sum", "broadcast_module", "collective", "resolve_group"]


class CollectiveFailure(RuntimeError):
    """A collective over the process group failed: another process died, hung or timed out."""


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a backend's failure inside the block (gloo's "Connection reset by peer", NCCL's timeout) into a
    :class:`CollectiveFailure` naming ``what`` and the fix."""
    try:
        yield
    except CollectiveFailure:
        raise
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CollectiveFailure(
            f"{what}: a collective over the process group failed ({first}). Another process most likely died, "
            "hung or timed out: check its log. Restart every process from the last checkpoint (torchrun "
            "restarts them all with --max-restarts)."
        ) from exc


def resolve_group(process_group: object) -> dist.ProcessGroup | None:
    """``None`` (single process), or the group to synchronise over.

    ``process_group="auto"`` uses the default group when ``torch.distributed`` is initialised with
    more than one process; ``None`` turns synchronisation off; a ``ProcessGroup`` is used as given.
    """
    if process_group is None:
        return None
    if isinstance(process_group, str):
        if process_group != "auto":
            raise ValueError(f"Invalid process_group={process_group!r}. Expected 'auto', None or a ProcessGroup.")
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return None
        return dist.group.WORLD
    return process_group  # type: ignore[return-value]


def all_reduce_sum(tensors: Sequence[torch.Tensor], group: dist.ProcessGroup | None) -> None:
    """Sum ``tensors`` over ``group`` in place, in one collective call (flattened into one buffer)."""
    if group is None or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    with collective("all_reduce"):
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def all_reduce_mean(tensors: Sequence[torch.Tensor], group: dist.ProcessGroup | None) -> None:
    """Average ``tensors`` over ``group`` in place (one flattened all-reduce); equal shares per process."""
    if group is None or not tensors:
        return
    all_reduce_sum(tensors, group)
    size = dist.get_world_size(group)
    for t in tensors:
        t /= size


def broadcast_module(module: nn.Module, group: dist.ProcessGroup | None) -> None:
    """Copy rank 0's parameters and buffers to every process of ``group`` (as DDP does at start-up)."""
    if group is None:
        return
    src = dist.get_global_rank(group, 0) if group is not dist.group.WORLD else 0
    with torch.no_grad(), collective("broadcast of the module's parameters"):
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src, group=group)
