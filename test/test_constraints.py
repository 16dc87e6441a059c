"""constraints-jazzy.txt (the ROS 2 Jazzy venv's pins) stays constraints.txt but for the
differences it documents: NumPy 1.x with the OpenCV that runs on it, and no dev-tool pins."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIFFERENT = {'numpy', 'opencv-contrib-python-headless'}  # apt Jazzy is NumPy 1.26
DEV_TOOLS = {'pytest', 'ruff'}  # colcon test uses the distribution's pytest 7.4


def _pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text(encoding='utf-8').splitlines():
        line = line.split('#')[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(';')
        for op in ('==', '>=', '<=', '<', '>'):
            if op in spec:
                pkg = spec.split(op, 1)[0].strip().lower()
                break
        else:
            pkg = spec.strip().lower()
        out[f'{pkg};{marker.strip()}'] = line
    return out


def test_jazzy_pins_are_the_main_pins_but_the_documented_ones():
    main, jazzy = _pins('constraints.txt'), _pins('constraints-jazzy.txt')
    expected = {k: v for k, v in main.items() if k.split(';')[0] not in DEV_TOOLS | DIFFERENT}
    got = {k: v for k, v in jazzy.items() if k.split(';')[0] not in DIFFERENT}
    assert got == expected
    assert jazzy['numpy;'] == 'numpy>=1.26,<2'
    assert jazzy['opencv-contrib-python-headless;'].startswith(
        'opencv-contrib-python-headless==4.10.')
