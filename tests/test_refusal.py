"""The refusal detector (rule based by default, pluggable) and false-refusal rates."""

import math

import pytest

from llamaforge.safety import refusal


def test_rules_flag_common_refusals_and_not_answers():
    for text in ("I can't help with that.", "I\u2019m sorry, but I won't do it.", "As an AI, I must decline.",
                 "Sorry.  I AM UNABLE TO   assist with this."):
        assert refusal.is_refusal(text), text
    for text in ("Anna lives in Millbrook.", "12", "Sure: mix the flour with water.", ""):
        assert not refusal.is_refusal(text), text


def test_detector_names_and_plugins():
    assert refusal.detector() is refusal.is_refusal
    world = refusal.detector("world")
    assert world("I can't help with that.") and not world("Yes.")
    plug = refusal.detector("os.path:isabs")  # any importable callable str -> bool
    assert plug("/x") and not plug("x")
    for bad, match in (("nope", "expected"), ("no_such_module_xyz:f", "No module"), ("os:sep", "not callable"),
                       ("os.path:no_such_fn", "no_such_fn")):
        with pytest.raises(ValueError, match=match):
            refusal.detector(bad)


def test_rates_by_hand():
    got = refusal.false_refusal({"helpful": ["4", "I can't.", "Anna"], "borderline": ["I won't.", "I refuse."],
                                 "none": []})
    # helpful: 1 of 3 refused; borderline: 2 of 2; Wilson 95% of 1/3: (0.0615, 0.7923)
    assert got["helpful"]["rate"] == pytest.approx(1 / 3) and got["helpful"]["n"] == 3
    assert got["helpful"]["ci95"] == pytest.approx([0.0615, 0.7923], abs=1e-4)
    assert got["borderline"]["rate"] == 1.0 and got["borderline"]["refusals"] == 2
    assert math.isnan(got["none"]["rate"]) and got["none"]["n"] == 0
