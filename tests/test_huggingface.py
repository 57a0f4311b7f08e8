"""LocoProp, K-FAC, a weighting and telemetry in a real Hugging Face ``Trainer`` (``LayerwiseTrainer``) on a tiny
Llama built from a config (nothing downloaded), against the hand-written loop, in float64; the logs read back
from the TensorBoard files; ``resume_from_checkpoint`` against the uninterrupted run; misuse."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("transformers", reason="the huggingface extra")
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments  # noqa: E402

import layerwise  # noqa: E402
from frameworks import small_locoprop  # noqa: E402
from layerwise import KFAC  # noqa: E402
from layerwise.integrations.huggingface import LayerwiseTrainer  # noqa: E402

MICRO, ACCUMULATE, STEPS, LENGTH = 4, 2, 4, 8


def _model() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=LENGTH,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).double()


def _data() -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (MICRO * ACCUMULATE * STEPS, LENGTH), generator=g)
    return [{"input_ids": t, "labels": t} for t in tokens]


def _terms(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Tensor]:
    out = model(**inputs, output_hidden_states=True)
    return {"lm": out.loss, "aux": 1e-2 * out.hidden_states[1].pow(2).mean()}


def _locoprop(model: nn.Module) -> torch.optim.Optimizer:
    layers = [(m, "identity") for m in model.modules() if isinstance(m, nn.Linear)]  # SiLU's gate: 'identity'
    return small_locoprop(model, layers)


def _kfac(model: nn.Module) -> torch.optim.Optimizer:
    for p in model.parameters():  # K-FAC trains nn.Linear layers only
        p.requires_grad_(any(p is q for m in model.modules() if isinstance(m, nn.Linear) for q in m.parameters()))
    return KFAC(model, lr=0.05, damping=1e-2, inv_every=1, likelihood="empirical")


def _parts() -> tuple[LlamaForCausalLM, layerwise.Uncertainty, layerwise.GradientTelemetry]:
    model = _model()
    weighting = layerwise.Uncertainty(["lm", "aux"]).double()
    linears = [p for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()]  # what K-FAC trains
    telemetry = layerwise.GradientTelemetry({"linears": linears, "attention": model.model.layers[0].self_attn}, every=2)
    return model, weighting, telemetry


def _args(out: Path, **kw: Any) -> TrainingArguments:
    base: dict[str, Any] = dict(
        output_dir=str(out),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ACCUMULATE,
        max_steps=STEPS,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        train_sampling_strategy="sequential",
        logging_steps=1,
        report_to=["tensorboard"],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return TrainingArguments(**{**base, **kw})


def _train(out: Path, factory: Callable[[nn.Module], torch.optim.Optimizer], resume: Path | None = None, **kw: Any):
    model, weighting, telemetry = _parts()
    trainer = LayerwiseTrainer(
        model=model,
        args=_args(out, **kw),
        train_dataset=_data(),
        losses=_terms,
        weighting=weighting,
        telemetry=telemetry,
        optimizer_factory=factory,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return trainer


def _hand_loop(factory: Callable[[nn.Module], torch.optim.Optimizer]):
    model, weighting, telemetry = _parts()
    opt = factory(model)
    own = torch.optim.Adam(weighting.parameters(), lr=1e-2)
    data = _data()
    for step in range(STEPS):
        model.zero_grad()
        for m in range(ACCUMULATE):
            part = data[(step * ACCUMULATE + m) * MICRO : (step * ACCUMULATE + m + 1) * MICRO]
            inputs = {k: torch.stack([d[k] for d in part]) for k in part[0]}
            layerwise.backward(
                _terms(model, inputs),
                weighting,
                params=[p for p in model.parameters() if p.requires_grad],
                telemetry=telemetry,
                backward_fn=lambda t: (t / ACCUMULATE).backward(),
            )
        opt.step()
        own.step()
        own.zero_grad()
    return model, weighting, telemetry


def _tensorboard(out: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in out.rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("factory", [_locoprop, _kfac], ids=["locoprop", "kfac"])
def test_the_trainer_equals_the_hand_loop_and_its_logs_reach_tensorboard(tmp_path: Path, factory: Any) -> None:
    trainer = _train(tmp_path, factory)
    model, weighting, telemetry = _hand_loop(factory)
    moved = [not torch.equal(p, q) for p, q in zip(trainer.model.parameters(), _model().parameters(), strict=True)]
    assert any(moved)
    for (n, p), q in zip(trainer.model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")
    torch.testing.assert_close(trainer.weighting.log_vars, weighting.log_vars, rtol=1e-10, atol=1e-12)
    assert not torch.equal(weighting.log_vars, torch.zeros(2, dtype=torch.float64))
    logged = _tensorboard(tmp_path)
    assert len(telemetry.history) == STEPS  # every=2 micro-batches: once per optimizer step
    for tag in telemetry.history[0].scalars():
        expected = [s.scalars()[tag] for s in telemetry.history]
        assert logged["train/telemetry/" + tag] == pytest.approx(expected, rel=1e-5, abs=1e-7), tag  # float32 files
    assert len(logged["train/loss/lm"]) == len(logged["train/weight/aux"]) == STEPS
    assert logged["train/weight/aux"][-1] == pytest.approx(weighting.current["aux"], rel=1e-6)


@pytest.mark.parametrize("factory", [_locoprop, _kfac], ids=["locoprop", "kfac"])
def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path: Path, factory: Any) -> None:
    whole = _train(tmp_path / "whole", factory)
    _train(tmp_path / "first", factory, save_strategy="steps", save_steps=2)
    resumed = _train(tmp_path / "again", factory, resume=tmp_path / "first" / "checkpoint-2")
    for (n, p), q in zip(resumed.model.named_parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=lambda m, n=n: f"{n}: {m}")
    torch.testing.assert_close(resumed.weighting.log_vars, whole.weighting.log_vars, rtol=1e-12, atol=1e-14)
    assert [s.to_dict() for s in resumed.telemetry.history] == [s.to_dict() for s in whole.telemetry.history]
    assert resumed.telemetry.step == whole.telemetry.step == STEPS * ACCUMULATE


def test_misuse_is_named(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"weighting= and telemetry= need the loss terms: pass losses="):
        LayerwiseTrainer(model=model, args=_args(tmp_path), weighting=layerwise.Uncertainty(["a", "b"]))
    with pytest.raises(TypeError, match=r"weighting= must be a layerwise weighting .*got dict"):
        LayerwiseTrainer(model=model, args=_args(tmp_path), losses=_terms, weighting={"lm": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Uncertainty has parameters of its own.*Use bf16=True"):
        LayerwiseTrainer(
            model=model, args=_args(tmp_path, fp16=True), losses=_terms, weighting=layerwise.Uncertainty(["lm", "aux"])
        )
    trainer = LayerwiseTrainer(model=model, args=_args(tmp_path), losses=_terms, optimizer_factory=_locoprop)
    trainer.is_fsdp_enabled = True  # what the Trainer sets under FSDP
    with pytest.raises(ValueError, match=r"reads whole layers .*FSDP or DeepSpeed"):
        trainer.create_optimizer()
    before = [p.detach().clone() for p in model.parameters()]
    _train(tmp_path / "plain", _locoprop, save_strategy="steps", save_steps=2)
    plain = LayerwiseTrainer(model=model, args=_args(tmp_path / "x"), train_dataset=_data(), losses=_terms)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    (tmp_path / "plain" / "checkpoint-2" / "layerwise.pt").unlink()
    resumed, weighting, telemetry = _parts()
    trainer = LayerwiseTrainer(
        model=resumed,
        args=_args(tmp_path / "y"),
        train_dataset=_data(),
        losses=_terms,
        weighting=weighting,
        telemetry=telemetry,
        optimizer_factory=_locoprop,
    )
    with pytest.raises(FileNotFoundError, match=r"has no layerwise.pt"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-2"))
    del plain


def test_clipping_with_locoprop_is_warned(tmp_path: Path) -> None:
    trainer = LayerwiseTrainer(
        model=_model(), args=_args(tmp_path, max_grad_norm=1.0), losses=_terms, optimizer_factory=_locoprop
    )
    with pytest.warns(UserWarning, match=r"max_grad_norm=1.0 clips .grad, but LocoProp's layers"):
        trainer.create_optimizer()
