"""The report's aggregate of tool use: the tool tasks with their tools, never without."""

import math

import pytest

from week09_alignment.report import tool_use

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_tool_use_is_the_mean_with_tools_and_leaves_the_no_tools_scores_out():
    # the keys stage_scores writes: every tool task twice, without and with its tool
    scores = {"pydocs_bpb": 2.5, "core": 0.1, "win_rate": 0.9,
              "tool_arithmetic_no_tools": 0.0, "tool_arithmetic_tools": 0.9,
              "tool_string_no_tools": 0.0, "tool_string_tools": 0.6,
              "tool_facts_no_tools": 0.3, "tool_facts_tools": 1.0}
    assert tool_use(scores) == pytest.approx((0.9 + 0.6 + 1.0) / 3)
    assert math.isnan(tool_use({"tool_facts_no_tools": 0.3, "core": 0.1}))
