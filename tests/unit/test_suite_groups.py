"""The suite's own scheduling: tests that share an expensive fixture (the image, a stack) are
grouped with `xdist_group`, and the groups must reach xdist's scheduler."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("suite-meta")
def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    """With `--dist loadgroup`, xdist sends a group to one worker by the `@group` suffix of
    its node ids; pytest 9 dropped the attribute xdist 3.8 writes it to, so every group was
    spread over the workers and each built the image and started its own stacks."""
    if getattr(request.config.option, "loadgroup", False):  # an xdist worker, loadgroup
        assert request.node.nodeid.endswith("@suite-meta"), request.node.nodeid
