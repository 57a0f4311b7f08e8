"""The autoencoder report's time to each method's final loss (LocoProp's time to Shampoo's final loss, etc.)."""

from layerwise_bench.autoencoder._report import _reach_lines, time_to_final_loss


def _run(curves: dict[str, list[float]]) -> dict:
    return {
        "methods": {
            name: {"records": [{"epoch": e, "train_time": 2.0 * e, "train_loss": x} for e, x in enumerate(xs, 1)]}
            for name, xs in curves.items()
        }
    }


def test_time_to_a_final_loss_is_the_end_of_the_first_epoch_at_or_below_it():
    run = _run({"shampoo": [90, 70, 60], "locoprop": [80, 60, 50], "adam": [95, 93, 91], "empty": []})
    assert time_to_final_loss(run, "locoprop", "shampoo") == 4.0  # 60 at epoch 2, at or below shampoo's 60
    assert time_to_final_loss(run, "shampoo", "shampoo") == 6.0
    assert time_to_final_loss(run, "adam", "shampoo") is None
    assert time_to_final_loss(run, "adam", "empty") is None
    run["methods"]["shampoo"]["status"] = "diverged"  # its last loss is where it stopped, not a final loss
    assert time_to_final_loss(run, "locoprop", "shampoo") is None


def test_the_table_averages_the_runs_that_reach_the_loss():
    runs = [_run({"a": [10, 5], "b": [8, 6]}), _run({"a": [10, 7], "b": [8, 6]})]
    lines = _reach_lines(runs, ["a", "b"])
    # a reaches b's 6 in run 1 only (epoch 2, 4 s); b reaches a's final loss in run 2 only (7, at 4 s)
    assert "| a | 4.0 | 4.0 |" in lines and "| b | 4.0 | 4.0 |" in lines
    runs[1]["methods"]["b"]["records"][0]["train_loss"] = 7  # now b gets to a's 7 at epoch 1 of run 2
    assert "| b | 2.0 | 4.0 |" in _reach_lines(runs, ["a", "b"])
    assert _reach_lines(runs, ["a"]) == []
