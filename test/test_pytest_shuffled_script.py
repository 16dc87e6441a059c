"""scripts/pytest_shuffled.py's order (plain Python): every test once, each file's tests
together, and the order changes from run to run."""

import importlib.util
import random
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'pytest_shuffled.py'
spec = importlib.util.spec_from_file_location('pytest_shuffled', SCRIPT)
pytest_shuffled = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pytest_shuffled)

IDS = [f'test/test_{f}.py::test_{i}' for f in 'abcd' for i in range(6)]


def test_every_test_once_and_files_kept_together():
    rng = random.Random(0)
    orders = [pytest_shuffled.shuffled(IDS, rng) for _ in range(5)]
    for order in orders:
        assert sorted(order) == sorted(IDS)
        files = [i.split('::')[0] for i in order]
        runs = [f for k, f in enumerate(files) if k == 0 or f != files[k - 1]]
        assert len(runs) == 4  # each file's tests are contiguous
    assert len({tuple(o) for o in orders}) == 5  # a new order each run
    assert any(o[:6] != IDS[:6] for o in orders)
