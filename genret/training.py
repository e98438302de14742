"""One plain PyTorch training loop under accelerate: 1 CPU, 1 GPU, or ``accelerate launch`` with N processes.

>>> result = train(model, dataset, collate_fn, TrainConfig(output_dir="runs/dsi", epochs=8))  # doctest: +SKIP
>>> result.model.save_pretrained("runs/dsi/model")                                          # doctest: +SKIP
>>> train(model, dataset, collate_fn, config, resume=True)   # continue from the latest checkpoint  # doctest: +SKIP

``model`` is any seq2seq model whose ``forward(**batch)`` returns an object with ``.loss`` (HF models do);
``collate_fn`` turns a list of dataset rows into that ``batch`` dict. The loop knows nothing about docids.

What it does, in order: AdamW (fused on CUDA; weight decay on matrices only), a warmup + linear / cosine / constant
schedule counted in optimizer steps (:func:`lr_factor`), ``accelerator.accumulate`` for gradient accumulation,
clipping, a tqdm bar on the main process, one JSON line per ``log_every`` steps in ``output_dir/metrics.jsonl``
(and ``accelerator.log`` when trackers are configured), ``evaluate(model)`` every ``eval_every`` steps and at the
end, a checkpoint every ``checkpoint_every`` steps and at the end.

Data order depends only on ``seed`` and the epoch (:class:`EpochShuffle`), so every process draws the same
permutation and accelerate's prepared DataLoader gives each its own disjoint share of every batch. Given each
row's source length (``train(..., lengths=...)``) and ``group_by_length``, batches hold rows of similar length
(:class:`LengthGroupedShuffle`): a batch is padded to its longest row, so mixing 64-token documents with 8-token
queries makes every batch cost as much as a batch of documents.

Checkpoints: ``output_dir/checkpoints/step-N`` holds what ``accelerator.save_state(safe_serialization=True)``
writes plus ``trainer_state.json`` (step, epoch, samples seen, elapsed seconds, the settings that fix the data
order). It is written to ``.tmp-step-N`` and renamed, so a run killed while saving leaves nothing that resumes.
Honest note on pickle: only the model weights are safetensors (``model.safetensors``). accelerate writes the
optimizer (``optimizer.bin``), the LR scheduler (``scheduler.bin``), the GradScaler for fp16 (``scaler.pt``) and
each process's RNG states (``random_states_<rank>.pkl``: Python, numpy, torch, CUDA) with ``torch.save``, i.e. in
pickle format; it reads them back with ``torch.load(weights_only=True)`` (a restricted unpickler that builds
only tensors, containers and a few allow-listed numpy types; if the RNG file fails to load accelerate only logs
it at info level). Under FSDP / DeepSpeed accelerate writes those engines' own (sharded, torch.save) files instead.
Checkpoints are for resuming the same run in the same environment; the model handed on to others is saved by the
caller (``save_pretrained``, safetensors). A fresh run (``resume=False``) refuses an ``output_dir`` that already
holds checkpoints, so two runs never mix.

``resume=True`` restores the latest checkpoint and continues the same run: same step counter, the rest of the
interrupted epoch (``accelerator.skip_first_batches``), same LR schedule and RNG streams, and ``metrics.jsonl``
cut back to the checkpoint's step and appended to. On CPU a resumed run ends bit-for-bit where an uninterrupted
one does. Resume with the same number of processes, batch size, grad_accum and seed (checked).

Limits: ``evaluate`` runs on the main process only, on the unwrapped model, so under FSDP / DeepSpeed ZeRO-3
(sharded parameters) it must do its own gathering or be left out. The LR scheduler is stepped once per optimizer
step (``step_scheduler_with_optimizer=False``), whatever the number of processes. Map-style datasets only (the
sampler needs ``len``). Tested on CPU (one process, and two under DDP/gloo); CUDA, FSDP and DeepSpeed paths are
accelerate's and untested here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from genret.checkpoints import (
    STATE_FILE,
    latest_checkpoint,
    refuse_mixed_runs,
    save_checkpoint,
    truncate_metrics,
)
from genret.config import check_numbers

logger = logging.getLogger(__name__)

SCHEDULES = ("linear", "cosine", "constant")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainConfig:
    """How to train; the ``train:`` section of a recipe."""

    output_dir: str = "runs/train"
    """Folder for metrics.jsonl, checkpoints/ and tracker logs."""
    max_steps: int | None = None
    """Optimizer steps to train for; None = ``epochs`` passes over the data."""
    epochs: float = 1.0
    """Passes over the data when max_steps is None (fractions allowed)."""
    batch_size: int = 32
    """Examples per micro-batch per process (effective batch = batch_size x grad_accum x processes)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 5e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay, applied to parameters with 2+ dimensions (not biases, not norms)."""
    warmup_steps: int = 0
    """Steps of linear warmup; 0 = use warmup_ratio."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of the total steps, when warmup_steps is 0."""
    schedule: str = "linear"
    """After warmup: "linear" decay to 0, "cosine" decay to 0, or "constant"."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this; 0 = no clipping."""
    mixed_precision: str = "auto"
    """"auto" (bf16 on CUDA when supported, else as ``accelerate launch`` says, else bf16 on a CPU with native bf16
    instructions (avx512_bf16 / amx_bf16: 1.5x a decoder step on an AMD EPYC), else "no"), "no", "bf16", "fp16".
    bf16 is autocast: the weights and the optimizer stay float32."""
    seed: int = 0
    """Seeds the data order and the RNGs dropout draws from (the model's initialisation is the caller's)."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many steps; 0 = only at the end."""
    keep_checkpoints: int = 2
    """Keep the newest this many checkpoints; 0 = keep all."""
    eval_every: int = 0
    """Call evaluate(model) every this many steps; 0 = only at the end."""
    log_every: int = 10
    """Write a metrics line every this many steps (and always at the last step)."""
    log_with: list[str] = field(default_factory=list)
    """accelerate trackers ("tensorboard", "wandb", ...); empty = metrics.jsonl only."""
    num_workers: int = 0
    """DataLoader worker processes."""
    group_by_length: bool = True
    """When ``train`` is given the rows' source lengths: batches of rows of similar length, in random order
    (:class:`LengthGroupedShuffle`); padding is what a step pays for. The recipe pipeline always gives them."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        check_numbers(
            self,
            positive=("batch_size", "grad_accum", "log_every", "lr", "max_steps")
            + (("epochs",) if self.max_steps is None else ()),
            non_negative=(
                "weight_decay",
                "warmup_steps",
                "warmup_ratio",
                "max_grad_norm",
                "seed",
                "checkpoint_every",
                "keep_checkpoints",
                "eval_every",
                "num_workers",
            ),
        )
        if self.warmup_ratio >= 1:
            raise ValueError(f"warmup_ratio must be below 1 (a fraction of the steps), got {self.warmup_ratio}")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    step: int
    """Optimizer steps taken in total (including those before a resume)."""
    loss: float
    """Training loss of the last step, averaged over its micro-batches and the processes (nan if no step ran)."""
    history: list[dict[str, Any]]
    """The metrics lines written by this call (train lines; eval lines on the main process)."""
    model: torch.nn.Module
    """The trained model, unwrapped from DDP / mixed-precision wrappers; save it with save_pretrained."""
    checkpoint: str | None = None
    """The last checkpoint folder written."""


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)``; the same on every process."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class LengthGroupedShuffle(EpochShuffle):
    """:class:`EpochShuffle`, then within each window of ``group`` batches the rows sorted by length (longest
    first) and cut into batches, and the full batches shuffled. Depends only on ``(seed, epoch)``.

    Every batch but possibly the last is full and starts at a multiple of ``batch_size``, so the DataLoader's
    batches are exactly these groups; the one short batch (if ``n`` is not a multiple) comes last.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, group: int = 50) -> None:
        super().__init__(len(lengths), seed)
        if batch_size < 1 or group < 1:
            raise ValueError(f"batch_size and group must be at least 1, got {batch_size}, {group}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.group = batch_size, group

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=generator).numpy()
        window = self.batch_size * self.group
        batches = []
        for begin in range(0, self.n, window):
            chunk = order[begin : begin + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        shuffled = torch.randperm(len(full), generator=generator).tolist()
        return iter(np.concatenate([full[i] for i in shuffled] + short).tolist() if batches else [])


def lr_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak LR for the update after ``step`` completed steps.

    Warmup: ``(step + 1) / (warmup + 1)`` (the first update already moves). Then, with
    ``progress = (step - warmup) / (total - warmup)``: linear ``1 - progress``, cosine
    ``(1 + cos(pi * progress)) / 2``, constant ``1``.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def train(
    model: torch.nn.Module,
    dataset: Any,
    collate_fn: Callable[[list[Any]], Mapping[str, Any]],
    config: TrainConfig,
    *,
    evaluate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    resume: bool = False,
    progress: bool = True,
    lengths: Sequence[int] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` (rows batched by ``collate_fn``) as ``config`` says; see the module doc.

    ``lengths``: each row's source length in tokens; with ``config.group_by_length`` batches group rows of
    similar length."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    out = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=_mixed_precision(config.mixed_precision),
        log_with=config.log_with or None,
        project_dir=str(out),
        step_scheduler_with_optimizer=False,
    )
    set_seed(config.seed)
    main = accelerator.is_main_process
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")

    # what fixes the data order: must match on resume
    grouped = config.group_by_length and lengths is not None
    if grouped and len(lengths) != len(dataset):
        raise ValueError(f"lengths has {len(lengths)} entries for a dataset of {len(dataset)} rows")
    order = dict(num_processes=accelerator.num_processes, batch_size=config.batch_size, grad_accum=config.grad_accum,
                 seed=config.seed, group_by_length=grouped)  # fmt: skip
    refuse_mixed_runs(out, resume)
    checkpoint, state = latest_checkpoint(out), None
    if checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        saved = {"group_by_length": False, **state["order"]}  # checkpoints from before grouping existed
        changed = {k: (saved.get(k), v) for k, v in order.items() if saved.get(k) != v}
        if changed:
            raise ValueError(f"cannot resume {checkpoint}: data order settings changed (saved, now): {changed}")
    elif resume:
        logger.info("resume=True but no checkpoint in %s: starting from scratch", out / "checkpoints")

    sampler = (
        LengthGroupedShuffle(lengths, config.batch_size, config.seed)
        if grouped
        else EpochShuffle(len(dataset), config.seed)
    )
    loader_rng = torch.Generator()  # worker seeds come from here, not from the global stream dropout draws from
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=config.num_workers, generator=loader_rng,
                        pin_memory=accelerator.device.type == "cuda")  # fmt: skip
    optimizer = _adamw(model, config, fused=accelerator.device.type == "cuda")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    warmup = config.warmup_steps or round(config.warmup_ratio * total)
    factor = partial(lr_factor, warmup=warmup, total=total, schedule=config.schedule)
    scheduler = accelerator.prepare(torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer, factor))

    step, samples_before, elapsed_before = 0, 0, 0.0
    if state is not None:
        accelerator.load_state(str(checkpoint))  # model, optimizer, scheduler, RNG states, accumulation counter
        step, samples_before, elapsed_before = state["step"], state["samples_seen"], state["elapsed"]
        if main:
            truncate_metrics(out / METRICS_FILE, step)
        logger.info("resumed from %s at step %d", checkpoint, step)
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
    if config.log_with:
        accelerator.init_trackers(out.name or "genret", config=_flat(asdict(config)))

    device = accelerator.device
    history: list[dict[str, Any]] = []
    window = torch.zeros(3, device=device)  # loss sum, micro-batches, examples since the last log line
    last = torch.zeros(2, device=device)  # loss sum, micro-batches of the current step
    examples_local, loss = 0, float("nan")
    start = window_start = time.perf_counter()
    if state is not None and main and "log_window" in state:  # resume the log line the checkpoint cut in two
        *sums, seconds = state["log_window"]
        window += torch.tensor(sums, device=device, dtype=window.dtype)
        window_start -= seconds
    bar = tqdm(total=total, initial=step, disable=not (progress and accelerator.is_local_main_process), desc="train")

    def write(record: dict[str, Any]) -> None:
        history.append(record)
        if main:
            with open(out / METRICS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    model.train()
    epoch = step // steps_per_epoch
    while step < total:
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        loader_rng.manual_seed(_mix(config.seed, epoch, 1))
        skip = (step - epoch * steps_per_epoch) * config.grad_accum
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        try:
            for batch in batches:
                n = _batch_size(batch)
                with accelerator.accumulate(model):
                    micro_loss = model(**batch).loss
                    accelerator.backward(micro_loss)
                    if accelerator.sync_gradients and config.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                examples_local += n
                detached = micro_loss.detach().float()
                window += torch.stack([detached, detached.new_ones(()), detached.new_tensor(float(n))])
                last += torch.stack([detached, detached.new_ones(())])
                if not accelerator.sync_gradients:
                    continue
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                step += 1
                bar.update(1)
                final = step >= total
                if final:
                    loss_sum, micro = accelerator.reduce(last, "sum").tolist()
                    loss = loss_sum / micro
                last.zero_()
                if step % config.log_every == 0 or final:
                    loss_sum, micro, examples = accelerator.reduce(window, "sum").tolist()
                    now = time.perf_counter()
                    record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": loss_sum / micro,
                              "lr": lr, "examples_per_s": examples / max(now - window_start, 1e-9),
                              "elapsed": elapsed_before + now - start}  # fmt: skip
                    write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                    if config.log_with:
                        accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                    window.zero_()
                    window_start = now
                if evaluate is not None and ((config.eval_every and step % config.eval_every == 0) or final):
                    _run_evaluate(accelerator, model, evaluate, step, write)
                if (config.checkpoint_every and step % config.checkpoint_every == 0) or final:
                    seen = samples_before + int(accelerator.reduce(torch.tensor(examples_local, device=device), "sum"))
                    pending = accelerator.reduce(window.clone(), "sum").tolist()  # the log line not yet written
                    state = {"step": step, "epoch": step / steps_per_epoch, "samples_seen": seen,
                             "elapsed": elapsed_before + time.perf_counter() - start, "order": order,
                             "log_window": [*pending, time.perf_counter() - window_start]}  # fmt: skip
                    checkpoint = save_checkpoint(accelerator, out, state, config.keep_checkpoints)
                if final:
                    break
        finally:
            if hasattr(batches, "end"):
                batches.end()  # leave accelerate's GradientState clean if we stopped mid-epoch or raised
        epoch += 1
    bar.close()
    if config.log_with:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return TrainResult(step, loss, history, accelerator.unwrap_model(model), str(checkpoint) if checkpoint else None)


def _run_evaluate(accelerator: Any, model: Any, evaluate: Callable, step: int, write: Callable) -> None:
    """evaluate(unwrapped model) on the main process, in eval mode, without touching the training RNG streams."""
    if accelerator.is_main_process:
        states = _rng_state()
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        try:
            with torch.no_grad():
                metrics = dict(evaluate(unwrapped))
        finally:
            model.train()
            _set_rng_state(states)
        write({"step": step, "eval": True, **{k: float(v) for k, v in metrics.items()}})
    accelerator.wait_for_everyone()


def _adamw(model: torch.nn.Module, config: TrainConfig, *, fused: bool) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)


def _mixed_precision(value: str) -> str | None:
    if value != "auto":
        return value
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # as `accelerate launch --mixed_precision` / its config file says
    if not torch.cuda.is_available() and cpu_has_native_bf16():
        return "bf16"
    return "no"


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 dot products in hardware (x86 flags ``avx512_bf16`` or ``amx_bf16``).

    oneDNN runs bf16 on any AVX-512 CPU, but without these instructions it emulates them and gains nothing over
    float32; a system without ``/proc/cpuinfo`` (macOS, Windows) answers False."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _batch_size(batch: Any) -> int:
    if not isinstance(batch, Mapping):
        raise TypeError(f"collate_fn must return a dict of model inputs, got {type(batch).__name__}")
    first = batch.get("input_ids", batch.get("labels", next(iter(batch.values()))))
    return len(first)


def _mix(*values: int) -> int:
    return int(np.random.SeedSequence(list(values)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
