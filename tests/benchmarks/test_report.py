"""The report's figures: targets, whether they are met, and by how much."""

from __future__ import annotations

import json

from benchmarks.report import Figure, Target


def test_a_target_of_zero_is_met_or_not_and_has_no_fractional_margin() -> None:
    none = Target("at_most", 0, "value")
    for value, met in ((0.0, True), (3.0, False)):
        figure = Figure("retransmissions", value, "", target=none)
        assert (figure.met, figure.margin) == (met, None)
        json.dumps(figure.as_json())  # the report writes every figure
