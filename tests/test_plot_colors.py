"""Report plots: no two methods share a colour, and a method keeps its colour from plot to plot."""

import pytest

pytest.importorskip("matplotlib")

import layerwise_bench as bench  # noqa: E402
from layerwise_bench.core._plotting import distinct_colors, method_colors, palette  # noqa: E402


def test_every_registered_method_has_its_own_colour():
    colours = method_colors(bench.METHODS)
    assert list(colours) == list(bench.METHODS)
    assert len(set(colours.values())) == len(bench.METHODS)
    assert len(bench.METHODS) <= len(palette())  # more: the registry outgrew the palette, extend it


def test_a_method_keeps_its_colour_in_any_subset_and_order():
    everyone = method_colors(bench.METHODS)
    names = ["muon", "locoprop-m-bf16-t5-c4", "adam", "sgd"]
    assert method_colors(names) == {n: everyone[n] for n in names}
    assert method_colors(reversed(names)) == {n: everyone[n] for n in reversed(names)}


def test_names_outside_the_registry_take_colours_nobody_in_the_plot_has():
    names = ["adam", "my-optimizer", "sgd", "another", "adam"]
    colours = method_colors(names)
    assert list(colours) == ["adam", "my-optimizer", "sgd", "another"]
    assert len(set(colours.values())) == 4
    assert colours["adam"] == method_colors(["adam"])["adam"]


def test_distinct_colors_without_a_registry_and_a_clash_of_preferences():
    assert len(set(distinct_colors(f"m{i}" for i in range(60)).values())) == 60
    colours = distinct_colors(["a", "b"], preferred={"a": "#000000", "b": "#000000"})
    assert colours["a"] == "#000000" and colours["b"] != "#000000"
