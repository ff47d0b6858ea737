"""Every number the CLI and the page produce for a fixed set of inputs, held equal.

``tests/golden/outputs.json.gz`` was recorded by ``tests/golden/record.py`` before the core was
restructured; a change that moves code must leave these outputs equal. A change that means to
alter a number re-records the file and says why in its commit.
"""

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import record  # noqa: E402

pytestmark = pytest.mark.slow

WANT = json.loads(gzip.decompress(record.OUT.read_bytes()))


@pytest.fixture(scope="module")
def got():
    return record.record()


@pytest.mark.parametrize("kind", sorted(WANT))
def test_outputs_unchanged(got, kind):
    assert set(got[kind]) == set(WANT[kind])
    changed = [case for case in WANT[kind] if got[kind][case] != WANT[kind][case]]
    assert not changed, f"{kind} outputs changed for: {changed}"
