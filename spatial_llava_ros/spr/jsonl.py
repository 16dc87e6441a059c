"""Append-only JSONL files: every stage writes one, the next one reads it, reruns resume."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from spatial_llava_ros.errors import InputError


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file; a torn last line (killed run) is skipped, others are errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f'{path} does not exist (run the previous SPR stage first)')
    lines = path.read_text(encoding='utf-8').splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            if n == len(lines):
                return  # a write cut short by a kill: the resumed run redoes it
            raise InputError(f'{path}:{n} is not valid JSON: {exc}') from exc


def read_optional(path: str | Path) -> list[dict]:
    return list(read_jsonl(path)) if Path(path).is_file() else []


def append_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Append records (one flush per call, so a group lands together or is redone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records)
    if text:
        _drop_torn_tail(path)
        with path.open('a', encoding='utf-8') as fh:
            fh.write(text)
            fh.flush()
    return text.count('\n')


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line left by a killed writer, so appends stay parseable."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b'\n'):
        return
    cut = data.rfind(b'\n') + 1
    path.write_bytes(data[:cut])


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    n = 0
    with tmp.open('w', encoding='utf-8') as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + '\n')
            n += 1
    tmp.replace(path)
    return n
