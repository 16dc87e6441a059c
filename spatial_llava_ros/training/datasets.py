"""Training data read from disk as it is needed: ``spatial-llava convert`` output, lazily.

A SUN-Spot-scale set (90k image-conversation pairs) must never sit in memory at once. The
conversations JSON is scanned once for the byte span of each record (16 bytes a record);
a record, its image and its preprocessed pixels are read only when a step asks for it, in
DataLoader worker processes. The sample order is the trainer's: a global list of record
indices per micro-step drawn from (seed, micro-step) alone, of which each rank reads its
own share, so the order does not depend on the number of processes and a resumed run
continues it exactly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.distributed import DistEnv, shard
from spatial_llava_ros.training.packing import Example, Packer, conversation_example

CHUNK = 1 << 20


def record_spans(path: Path) -> np.ndarray:
    """(N, 2) int64 byte offsets [start, end) of each object in a top-level JSON array.

    Streams the file in 1 MiB chunks (a JSON Lines file works too): the index, not the
    records, is what stays in memory.
    """
    import codecs

    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder('utf-8')()
    spans: list[tuple[int, int]] = []
    with path.open('rb') as fh:
        buf, pos, base, eof = '', 0, 0, False  # base: byte offset of buf[pos]

        def fill() -> None:
            nonlocal buf, pos, eof
            chunk = fh.read(CHUNK)
            eof = not chunk
            buf = buf[pos:] + utf8.decode(chunk, final=eof)
            pos = 0

        started = False
        while True:
            while True:
                while pos < len(buf) and buf[pos] in ' \t\r\n,':
                    pos += 1
                    base += 1
                if pos < len(buf) or eof:
                    break
                fill()
            if pos >= len(buf):
                break
            if not started:
                started = True
                if buf[pos] == '[':
                    pos += 1
                    base += 1
                continue
            if buf[pos] == ']':
                break
            while True:
                try:
                    _, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof:
                        raise InputError(f'{path}: not a JSON array of records near byte '
                                         f'{base}: {exc.msg}') from exc
                    fill()
            nbytes = len(buf[pos:end].encode('utf-8'))
            spans.append((base, base + nbytes))
            base += nbytes
            pos = end
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


class ConversationDataset(torch.utils.data.Dataset):
    """Map-style dataset over converted records; ``__getitem__`` reads one from disk."""

    def __init__(self, json_path: str | Path, image_dir: str | Path | None,
                 template: PromptTemplate, packer: Packer | None = None) -> None:
        self.path = Path(json_path)
        if not self.path.is_file():
            raise InputError(f'data.json_path {self.path} does not exist')
        self.image_dir = Path(image_dir) if image_dir else self.path.parent
        self.template = template
        self.packer = packer
        self.spans = record_spans(self.path)
        if not len(self.spans):
            raise InputError(f'{self.path} holds no records')

    def __len__(self) -> int:
        return len(self.spans)

    def record(self, i: int) -> dict:
        start, end = (int(v) for v in self.spans[i])
        with self.path.open('rb') as fh:
            fh.seek(start)
            return json.loads(fh.read(end - start))

    def __getitem__(self, i: int) -> Example:
        from PIL import Image

        rec = self.record(i)
        img_path = self.image_dir / rec['image']
        if not img_path.is_file():
            raise InputError(f'record {rec.get("id")}: image {img_path} not found')
        with Image.open(img_path) as im:
            image = np.asarray(im.convert('RGB'))
        ex = conversation_example(image, rec['conversations'], self.template,
                                  meta={'id': rec.get('id'), 'index': i})
        if self.packer is not None:  # preprocessing in the worker, not the training loop
            self.packer.pixels(ex)
            ex.image = np.zeros((1, 1, 3), np.uint8)  # the pixels are what the model needs
        return ex


def global_indices(micro_step: int, size: int, seed: int, n: int) -> list[int]:
    """The record indices of one micro-step for the whole job (every rank draws the same)."""
    rng = random.Random(seed * 1_000_003 + micro_step)
    return [rng.randrange(n) for _ in range(size)]


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler: this rank's share of each micro-step's global batch, from ``start``."""

    def __init__(self, n: int, size: int, seed: int, start: int, stop: int,
                 env: DistEnv) -> None:
        self.n, self.size, self.seed = n, size, seed
        self.start, self.stop, self.env = start, stop, env

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(self.start, self.stop):
            yield shard(global_indices(t, self.size, self.seed, self.n), self.env)


def conversation_loader(dataset: ConversationDataset, packer: Packer, dtype: torch.dtype,
                        size: int, seed: int, start: int, stop: int, env: DistEnv,
                        workers: int) -> torch.utils.data.DataLoader:
    """Batches (``packing.Batch``) for micro-steps ``start``..``stop``, built in workers."""
    from functools import partial

    sampler = StepSampler(len(dataset), size, seed, start, stop, env)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=partial(packer.collate, dtype=dtype),
        num_workers=max(0, workers), prefetch_factor=2 if workers > 0 else None,
        persistent_workers=False,
        multiprocessing_context='fork' if workers > 0 else None)
