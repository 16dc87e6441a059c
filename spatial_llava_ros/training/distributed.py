"""One trainer, one to many processes: the launcher's environment, DDP or FSDP, rank-0 duties.

``torchrun`` and ``accelerate launch`` both start one process per GPU and set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; a plain
``spatial-llava train`` sets none of them and runs as one process with no process group, as
it always did. The strategy (``distributed.strategy``: ``ddp`` or ``fsdp``) comes from the
train config, so the same command means the same run under either launcher.

Checkpoints are always full (unsharded) state dicts keyed by parameter name, gathered on
rank 0, so a run resumes with any number of processes and any strategy.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch

from spatial_llava_ros.errors import InputError

STRATEGIES = ('ddp', 'fsdp')


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def env_from_launcher(environ: dict | None = None) -> DistEnv:
    """Rank and world size as torchrun / accelerate launch set them (one process if unset)."""
    environ = os.environ if environ is None else environ
    try:
        world = int(environ.get('WORLD_SIZE', '1'))
        rank = int(environ.get('RANK', '0'))
        local = int(environ.get('LOCAL_RANK', str(rank)))
    except ValueError as exc:
        raise InputError(f'launcher environment is not numeric: {exc}') from exc
    if world < 1 or not 0 <= rank < world:
        raise InputError(f'launcher environment: RANK {rank} outside WORLD_SIZE {world}')
    return DistEnv(rank, world, local)


def init(env: DistEnv, device_request: str | None, timeout_s: float = 1800.0) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    want_cuda = torch.cuda.is_available() and (device_request in (None, 'cuda', 'auto')
                                               or str(device_request).startswith('cuda'))
    if want_cuda:
        if env.active:  # one GPU per process, as the launcher numbered them on this node
            device = torch.device('cuda', env.local_rank)
        else:
            index = torch.device(device_request).index if str(device_request).startswith(
                'cuda') else None
            device = torch.device('cuda', index or 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device('cpu' if device_request in (None, 'auto') else device_request)
    if env.active and not torch.distributed.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        torch.distributed.init_process_group(
            backend, timeout=datetime.timedelta(seconds=timeout_s),
            **({'device_id': device} if device.type == 'cuda' else {}))
    return device


def shutdown(env: DistEnv) -> None:
    if env.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        torch.distributed.barrier()


def all_sum(env: DistEnv, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64; the identity for one process)."""
    if not env.active:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64,
                     device=device if device.type == 'cuda' else 'cpu')
    torch.distributed.all_reduce(t)
    return [float(v) for v in t.cpu()]


def shard(items: list, env: DistEnv) -> list:
    """This rank's share of one global batch: every ``world_size``-th item from ``rank``."""
    return items[env.rank::env.world_size]


def wrap(module: torch.nn.Module, strategy: str, env: DistEnv, device: torch.device,
         find_unused: bool = False) -> torch.nn.Module:
    """DDP, or FSDP2 (``fully_shard``) per transformer block then the root; identity alone."""
    if not env.active:
        return module
    if strategy == 'ddp':
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            module, device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=find_unused)
    if strategy == 'fsdp':
        from torch.distributed.fsdp import fully_shard

        for sub in list(module.modules()):
            if type(sub).__name__.endswith(('DecoderLayer', 'EncoderLayer')):
                fully_shard(sub)
        fully_shard(module)
        return module
    raise InputError(f'distributed.strategy must be one of {STRATEGIES}, got {strategy!r}')


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, 'module', module) if type(module).__name__.endswith(
        'DistributedDataParallel') else module


def no_sync(module: torch.nn.Module, skip: bool):
    """DDP's gradient all-reduce held back on accumulation micro-steps (FSDP: a no-op)."""
    if skip and hasattr(module, 'no_sync'):
        return module.no_sync()
    return contextlib.nullcontext()


def is_fsdp(module: torch.nn.Module) -> bool:
    return any(type(m).__name__.startswith('FSDP') for m in module.modules())


def full_state(module: torch.nn.Module, opt: torch.optim.Optimizer | None
               ) -> tuple[dict, dict | None]:
    """(model, optimizer) state dicts, full and on the CPU, keyed by parameter name.

    Under FSDP this is a collective (every rank must call it); ranks other than 0 get
    empty dicts. The optimizer state's keys are parameter names, not positions, so it loads
    into any strategy and any number of processes.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    inner = unwrap(module)
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(inner, options=opts)
    opt_sd = get_optimizer_state_dict(inner, opt, options=opts) if opt is not None else None
    return model_sd, opt_sd


def load_full_state(module: torch.nn.Module, opt: torch.optim.Optimizer | None,
                    model_sd: dict, opt_sd: dict | None) -> None:
    """Inverse of ``full_state``: every rank passes the same full dicts (read from disk)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    inner = unwrap(module)
    set_model_state_dict(inner, model_sd, options=StateDictOptions(full_state_dict=True))
    if opt is not None and opt_sd is not None:
        # not strict: a trainable parameter that never got a gradient has no Adam state
        set_optimizer_state_dict(inner, opt, opt_sd,
                                 options=StateDictOptions(full_state_dict=True, strict=False))
