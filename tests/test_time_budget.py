"""``train_method(..., budget_s=...)``: a run on the clock, its rate decaying with the training time used and
stopped when the next step would no longer fit. The clock is faked, so the schedule and the stop are exact."""

import itertools
import types

import pytest

import layerwise_bench as bench
import layerwise_bench.core._harness as harness
from layerwise_bench import AutoencoderConfig, load_autoencoder_data, train_method

pytestmark = pytest.mark.bench  # end-to-end on tiny data

CFG = AutoencoderConfig(dataset="digits", epochs=1, subset=300, batch_size=100, warmup_epochs=0)


@pytest.fixture(scope="module")
def data():
    return load_autoencoder_data(CFG)


def _fake_clock(monkeypatch, step_seconds):
    """``perf_counter`` in the harness returns 0, s0, s0 + s1, ...: the step timed between two consecutive calls
    took ``step_seconds[i]`` (the calls come in pairs around each step, so odd gaps are not counted)."""
    gaps = itertools.chain.from_iterable((dt, 0.0) for dt in itertools.chain(step_seconds, itertools.repeat(1.0)))
    ticks = itertools.accumulate(gaps, initial=0.0)
    monkeypatch.setattr(harness, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


def _lrs_per_step(monkeypatch, optimizer_cls_holder):
    seen = []
    real_build = harness._build

    def build(*a, **k):
        model, opt, sched = real_build(*a, **k)
        step = opt.step

        def recording_step(closure=None):
            seen.append([g["lr"] for g in opt.param_groups])
            return step(closure)

        opt.step = recording_step
        optimizer_cls_holder.append(opt)
        return model, opt, sched

    monkeypatch.setattr(harness, "_build", build)
    return seen


def test_the_rate_decays_with_the_time_used_and_the_run_stops_before_the_budget(data, monkeypatch):
    _fake_clock(monkeypatch, [])  # every step takes 1 s; 3 steps per epoch
    opts = []
    lrs = _lrs_per_step(monkeypatch, opts)
    method, lr = bench.get_method("adam"), 1e-3
    recs = train_method(method, lr, data, CFG, progress=False, budget_s=10.5)
    # after 10 steps, 10 s + the next step's 1 s would pass 10.5 s: stop, within the budget
    assert len(lrs) == 10
    assert [r["epoch"] for r in recs] == [1, 2, 3, pytest.approx(3 + 1 / 3)]
    assert [r["steps"] for r in recs] == [3, 3, 3, 1]
    assert [r["stopped"] for r in recs] == [False, False, False, True]
    assert recs[-1]["train_time"] == 10.0 and [r["train_time"] for r in recs[:3]] == [3.0, 6.0, 9.0]
    # before step i (0-based) the time used is i seconds: lr * (1 - i / 10.5), for every parameter group
    for i, groups in enumerate(lrs):
        assert groups == pytest.approx([lr * (1 - i / 10.5)] * len(groups))
    assert [r["lr"] for r in recs] == pytest.approx([lr * (1 - t / 10.5) for t in (0, 3, 6, 9)])
    assert recs[-1]["train_loss"] < recs[-2]["train_loss"]  # evaluated where it stopped, after the partial epoch


def test_every_group_decays_from_its_own_rate(data, monkeypatch):
    _fake_clock(monkeypatch, [])
    lrs = _lrs_per_step(monkeypatch, [])
    muon = bench.get_method("muon")  # Muon's group at lr, Adam's (biases) at its own adam_lr
    train_method(muon, 0.05, data, CFG, progress=False, budget_s=4.5)
    adam_lr = lrs[0][1]
    assert adam_lr != 0.05 and len(lrs) == 4
    for i, groups in enumerate(lrs):
        assert groups == pytest.approx([0.05 * (1 - i / 4.5), adam_lr * (1 - i / 4.5)])


def test_the_stop_reads_the_median_of_recent_steps_so_one_slow_step_does_not_end_the_run(data, monkeypatch):
    _fake_clock(monkeypatch, [1.0, 1.0, 5.0, 1.0, 1.0])  # one slow step (a periodic root, or load)
    recs = train_method(bench.get_method("adam"), 1e-3, data, CFG, progress=False, budget_s=12.0)
    # 1+1+5+1+1 = 9 s, then 1-s steps: after 11 s the next (median 1 s) would reach 12 s exactly, which fits;
    # after 12 s it would not
    assert recs[-1]["train_time"] == 12.0 and sum(r["steps"] for r in recs) == 8


def test_a_method_without_a_schedule_keeps_its_rate_and_a_too_long_first_step_still_counts(data, monkeypatch):
    unscheduled = bench.Method(
        "adam-constant", "Adam, no schedule", bench.get_method("adam").build, 1e-3, scheduled=False
    )
    _fake_clock(monkeypatch, [])
    lrs = _lrs_per_step(monkeypatch, [])
    train_method(unscheduled, 1e-3, data, CFG, progress=False, budget_s=4.5)
    assert lrs == [[1e-3]] * 4
    _fake_clock(monkeypatch, [3.0])
    recs = train_method(unscheduled, 1e-3, data, CFG, progress=False, budget_s=2.0)
    assert len(recs) == 1 and recs[0]["stopped"] and recs[0]["steps"] == 1  # the first step is always taken
    assert recs[0]["train_time"] == 3.0  # and the record says by how much it passed the budget


def test_a_stopped_run_resumes_to_its_records_and_a_cut_one_continues_on_the_clock(data, monkeypatch, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    method = bench.get_method("adam")
    _fake_clock(monkeypatch, [])
    full = train_method(method, 1e-3, data, CFG, progress=False, budget_s=7.5, checkpoint=ckpt)
    assert [r["steps"] for r in full] == [3, 3, 1] and full[-1]["stopped"]
    monkeypatch.setattr(harness, "time", types.SimpleNamespace(perf_counter=lambda: pytest.fail("trained again")))
    again = train_method(method, 1e-3, data, CFG, progress=False, budget_s=7.5, checkpoint=ckpt, resume=True)
    assert again == full
    # a run cut after its first epoch continues on the clock, and ends as the uninterrupted one did
    cut = tmp_path / "cut.pt"
    _fake_clock(monkeypatch, [])

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(method, 1e-3, data, CFG, progress=False, budget_s=7.5, checkpoint=cut, on_epoch=interrupt)
    _fake_clock(monkeypatch, [])
    resumed = train_method(
        method, 1e-3, data, CFG, progress=False, budget_s=7.5, checkpoint=cut, resume=True, segment=1
    )
    assert [r["segment"] for r in resumed] == [0, 1, 1]
    assert [{**r, "segment": 0} for r in resumed] == full
    # a checkpoint of another budget is another run
    with pytest.raises(bench.CheckpointMismatch):
        train_method(method, 1e-3, data, CFG, progress=False, budget_s=8.0, checkpoint=ckpt, resume=True)


def test_a_bad_budget_is_refused(data):
    with pytest.raises(ValueError, match="budget_s=0"):
        train_method(bench.get_method("adam"), 1e-3, data, CFG, progress=False, budget_s=0)
