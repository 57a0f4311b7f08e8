"""The quickstart report says, from its numbers, what they mean."""

from layerwise_bench.autoencoder._report import write_report


def _run(methods: dict[str, list[tuple[float, float]]], untuned: tuple[str, ...] = ()) -> dict:
    """A results.json-shaped run: per method, (train loss, train time) at each epoch end."""
    return {
        "config": {"dataset": "digits", "epochs": 3},
        "environment": {},
        "command": "layerwise bench autoencoder --out x",
        "methods": {
            name: {
                "summary": name,
                "lr": 1e-3,
                "lr_source": "default (untuned)" if name in untuned else "tuned",
                "status": "complete",
                "records": [
                    {
                        "epoch": e + 1,
                        "train_loss": loss,
                        "test_loss": loss + 1.0,
                        "train_time": t,
                        "step_time_median": t / 10,
                    }
                    for e, (loss, t) in enumerate(curve)
                ],
            }
            for name, curve in methods.items()
        },
    }


def test_the_report_explains_the_loss_the_order_per_epoch_and_on_the_clock(tmp_path):
    run = _run(
        {
            "adam": [(30.0, 1.0), (25.0, 2.0), (22.0, 3.0)],
            "slowbutgood": [(24.0, 5.0), (20.0, 10.0), (18.0, 15.0)],
            "fast": [(26.0, 0.5), (21.0, 1.0), (20.0, 1.5)],
            "stuck": [(40.0, 1.0), (35.0, 2.0), (33.0, 3.0)],
        },
        untuned=("fast",),
    )
    text = write_report([run], tmp_path, plots=False).read_text()
    assert "sigmoid cross-entropy" in text and "Lower is better" in text and "64 pixels" in text
    assert "lowest training loss is slowbutgood (18.00), then fast (20.00), adam (22.00), stuck (33.00)" in text
    assert "held-out test images the lowest is slowbutgood (19.00)" in text
    # Adam's final loss 22.0: fast at the end of epoch 2 (1.0 s), slowbutgood of epoch 2 (10.0 s), stuck: never
    assert "adam's final training loss (22.00) was reached first by fast, after 1.0 s of training, " in text
    assert "then by slowbutgood (10.0 s); adam itself took 3.0 s; stuck never reached it." in text
    assert "lowest per epoch (slowbutgood) is not the first on the clock (fast)" in text
    assert "fast ran at the default rate" in text
    assert "stand-in for the paper's benchmark" in text and "MNIST" in text


def test_a_diverged_method_is_named_and_no_adam_means_the_highest_final_loss_is_the_mark(tmp_path):
    run = _run({"a": [(30.0, 1.0), (20.0, 2.0)], "b": [(25.0, 3.0), (24.0, 6.0)], "c": [(50.0, 1.0)]})
    run["methods"]["c"]["status"] = "diverged"
    run["config"]["dataset"] = "mnist"
    text = write_report([run], tmp_path, plots=False).read_text()
    assert "Not completed (diverged or stopped; no final loss): c." in text
    assert "b's final training loss (24.00) was reached first by a, after 2.0 s of training; b itself took 6.0" in text
    assert "784 pixels" in text and "stand-in" not in text


def test_a_workload_report_shows_its_other_metrics_and_takes_ratios_against_adamw(tmp_path):
    run = _run({"adamw": [(0.5, 2.0), (0.2, 4.0)], "other": [(0.4, 3.0), (0.1, 6.0)]})
    run["config"].update(workload="resnet-mnist", dataset="mnist")
    run["metrics"] = {"train_loss": "...", "test_loss": "...", "test_accuracy": "fraction right"}
    for name, accs in (("adamw", (0.97, 0.99)), ("other", (0.98, 0.985))):
        for rec, acc in zip(run["methods"][name]["records"], accs, strict=True):
            rec["test_accuracy"] = acc
    text = write_report([run], tmp_path, plots=False).read_text()
    assert "| final test_accuracy | train time (s) | time / AdamW |" in text
    # other: final accuracy 0.985, 6 s against adamw's 4 s; adamw's final loss 0.2 reached at its epoch 2 (6 s)
    assert "| other | 0.001 | 2 | 0.10000 | 0.10000 | 1.10000 | 0.9850 | 6.0 | 1.50 |" in text
    assert "| 6.0 | 1.50 | complete |" in text
