"""A service with a bad config value stops at start with one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.parametrize("module", ["services.gateway", "services.router"])
def test_invalid_config_stops_the_service_with_one_line(module: str) -> None:
    env = {**os.environ, "DRAFTGATE_ROUTING_WINDOW": "zero"}
    result = subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"draftgate {module.split('.')[1]}: invalid configuration: routing.window: expected int, got 'zero'"]
