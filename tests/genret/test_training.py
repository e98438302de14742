"""genret.training on CPU with a tiny T5 built from a config: learning, metrics, LR schedule, gradient accumulation,
evaluation hygiene, checkpoints, kill-and-resume, and two processes under `accelerate launch`."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.tracking import GeneralTracker
from transformers import T5Config, T5ForConditionalGeneration

from genret import training
from genret.training import EpochShuffle, LengthGroupedShuffle, TrainConfig, TrainResult, lr_factor, train


def tiny_t5(dropout: float = 0.0) -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=64, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=dropout,
    )  # fmt: skip
    return T5ForConditionalGeneration(config)


def rows(n: int) -> list[dict[str, torch.Tensor]]:
    """n random (source, 3-token target) pairs: fixed lengths, so no padding and a per-batch mean loss."""
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(2, 64, (8,), generator=g), "labels": torch.randint(2, 64, (3,), generator=g)}
            for _ in range(n)]  # fmt: skip


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    input_ids = torch.stack([r["input_ids"] for r in batch])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "labels": torch.stack([r["labels"] for r in batch])}  # fmt: skip


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def params(result: TrainResult) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0.0 if atol == 0 else 1e-5, msg=k)


def test_loss_goes_down_metrics_and_final_checkpoint(tmp_path: Path) -> None:
    calls: list[bool] = []

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        calls.append(model.training)
        return {"hits@1": 0.5}

    config = TrainConfig(output_dir=str(tmp_path), max_steps=40, batch_size=8, lr=1e-2, log_every=10, eval_every=20)
    result = train(tiny_t5(), rows(16), collate, config, evaluate=evaluate, progress=False)

    assert result.step == 40 and not isinstance(result.model, torch.nn.parallel.DistributedDataParallel)
    lines = metrics(tmp_path)
    train_lines = [m for m in lines if not m.get("eval")]
    assert [m["step"] for m in train_lines] == [10, 20, 30, 40]
    assert set(train_lines[0]) == {"step", "epoch", "loss", "lr", "examples_per_s", "elapsed"}
    assert train_lines[-1]["epoch"] == pytest.approx(20.0)  # 16 rows / batch 8 = 2 steps per epoch
    assert train_lines[-1]["loss"] < 0.6 * train_lines[0]["loss"]
    assert all(m["examples_per_s"] > 0 for m in train_lines) and train_lines[-1]["elapsed"] > train_lines[0]["elapsed"]
    assert [m for m in lines if m.get("eval")] == [{"step": s, "eval": True, "hits@1": 0.5} for s in (20, 40)]
    assert calls == [False, False]  # evaluate sees the model in eval mode
    assert result.history == lines

    ckpt = tmp_path / "checkpoints" / "step-40"
    assert result.checkpoint == str(ckpt)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-40"]
    # what accelerate writes: weights in safetensors; optimizer, scheduler and RNG states as torch.save pickles
    files = {p.name for p in ckpt.iterdir()}
    assert files == {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "trainer_state.json"}
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 40 and state["epoch"] == 20 and state["samples_seen"] == 40 * 8


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_lr_schedule_warmup_then_decay(tmp_path: Path, schedule: str) -> None:
    lr, warmup, total = 1e-3, 3, 10
    config = TrainConfig(output_dir=str(tmp_path), max_steps=total, batch_size=4, lr=lr, warmup_steps=warmup,
                         schedule=schedule, log_every=1)  # fmt: skip
    train(tiny_t5(), rows(8), collate, config, progress=False)

    logged = [m["lr"] for m in metrics(tmp_path)]
    expected = []
    for update in range(1, total + 1):  # the lr that update number `update` used
        if update <= warmup:
            expected.append(lr * update / (warmup + 1))
            continue
        progress = (update - 1 - warmup) / (total - warmup)
        decay = {"linear": 1 - progress, "cosine": (1 + math.cos(math.pi * progress)) / 2, "constant": 1.0}
        expected.append(lr * decay[schedule])
    assert logged == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert logged[warmup] == pytest.approx(lr)  # peak right after warmup
    if schedule != "constant":
        assert logged[-1] < logged[warmup] and all(logged[i] >= logged[i + 1] for i in range(warmup, total - 1))


def test_lr_factor_ratio_and_bounds() -> None:
    assert lr_factor(0, warmup=0, total=10, schedule="linear") == 1.0
    assert lr_factor(10, warmup=0, total=10, schedule="cosine") == pytest.approx(0.0)
    assert lr_factor(50, warmup=0, total=10, schedule="linear") == 0.0  # never negative past the end
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


def test_grad_accum_matches_larger_batch(tmp_path: Path) -> None:
    data = rows(24)
    big = train(
        tiny_t5(),
        data,
        collate,
        TrainConfig(output_dir=str(tmp_path / "big"), max_steps=4, batch_size=8, lr=1e-2),
        progress=False,
    )
    accum = train(tiny_t5(), data, collate,
                  TrainConfig(output_dir=str(tmp_path / "accum"), max_steps=4, batch_size=4, grad_accum=2, lr=1e-2),
                  progress=False)  # fmt: skip
    assert accum.step == big.step == 4
    assert accum.loss == pytest.approx(big.loss, rel=1e-5)
    assert_same_params(params(accum), params(big), atol=1e-5)
    assert metrics(tmp_path / "accum")[-1]["step"] == 4  # steps count optimizer updates, not micro-batches


def test_evaluate_does_not_disturb_training_rng(tmp_path: Path) -> None:
    def noisy_evaluate(model: torch.nn.Module) -> dict[str, float]:
        return {"noise": float(torch.rand(1000).sum())}  # draws from the global torch RNG

    config = dict(max_steps=6, batch_size=4, lr=1e-2, log_every=1)
    plain = train(tiny_t5(dropout=0.2), rows(12), collate, TrainConfig(output_dir=str(tmp_path / "a"), **config),
                  progress=False)  # fmt: skip
    evaluated = train(tiny_t5(dropout=0.2), rows(12), collate,
                      TrainConfig(output_dir=str(tmp_path / "b"), eval_every=1, **config),
                      evaluate=noisy_evaluate, progress=False)  # fmt: skip
    assert sum(1 for m in metrics(tmp_path / "b") if m.get("eval")) == 6
    assert evaluated.loss == plain.loss
    assert_same_params(params(evaluated), params(plain))


class Killed(RuntimeError):
    pass


def test_kill_and_resume_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    # 20 rows, batch 8 -> 3 micro-batches per epoch (the last one short); grad_accum 2 -> 2 steps per epoch.
    # Checkpoint at step 3 is mid-epoch, so the resumed run has to skip batches; dropout on, so RNG must resume too.
    data = rows(20)
    config = dict(max_steps=7, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=2, schedule="cosine",
                  checkpoint_every=3, keep_checkpoints=2, log_every=1)  # fmt: skip
    straight = train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(tmp_path / "a"), **config),
                     progress=False)  # fmt: skip

    def die_at_step_5(model: torch.nn.Module) -> dict[str, float]:
        if len(calls) == 4:
            raise Killed
        calls.append(1)
        return {"ok": 1.0}

    calls: list[int] = []
    out_b = tmp_path / "b"
    with pytest.raises(Killed):
        train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(out_b), eval_every=1, **config),
              evaluate=die_at_step_5, progress=False)  # fmt: skip
    assert [m["step"] for m in metrics(out_b) if not m.get("eval")] == [1, 2, 3, 4, 5]
    assert [p.name for p in (out_b / "checkpoints").iterdir()] == ["step-3"]

    # a fresh model object (as a restarted job would build) resumes from checkpoints/step-3
    resumed = train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(out_b), **config), resume=True,
                    progress=False)  # fmt: skip
    assert resumed.step == straight.step == 7
    assert resumed.loss == straight.loss  # on CPU, bit for bit
    assert_same_params(params(resumed), params(straight))

    lines_a, lines_b = metrics(tmp_path / "a"), [m for m in metrics(out_b) if not m.get("eval")]
    assert [m["step"] for m in lines_b] == list(range(1, 8))  # lines after step 3 dropped and logged again
    assert [m["loss"] for m in lines_b] == [m["loss"] for m in lines_a]
    assert [m["lr"] for m in lines_b] == [m["lr"] for m in lines_a]
    assert [m["step"] for m in metrics(out_b) if m.get("eval")] == [1, 2, 3]
    assert sorted(p.name for p in (out_b / "checkpoints").iterdir()) == ["step-6", "step-7"]
    state = json.loads((out_b / "checkpoints" / "step-7" / "trainer_state.json").read_text())
    assert (
        state["samples_seen"]
        == json.loads((tmp_path / "a" / "checkpoints" / "step-7" / "trainer_state.json").read_text())["samples_seen"]
    )

    with pytest.raises(ValueError, match="batch_size"):
        train(tiny_t5(), data, collate, TrainConfig(output_dir=str(out_b), **{**config, "batch_size": 4}),
              resume=True, progress=False)  # fmt: skip
    with pytest.raises(FileExistsError, match="resume=True"):  # a fresh run never mixes with an old one's checkpoints
        train(tiny_t5(), data, collate, TrainConfig(output_dir=str(out_b), **config), progress=False)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    def cpu(flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        return path

    assert training.cpu_has_native_bf16(cpu("fpu sse2 avx2 avx512f avx512_bf16 avx512vl"))
    assert training.cpu_has_native_bf16(cpu("fpu avx512f amx_bf16 amx_tile"))
    assert not training.cpu_has_native_bf16(cpu("fpu sse2 avx2 avx512f avx512bw avx512_bf16x"))  # whole flags only
    assert not training.cpu_has_native_bf16(tmp_path / "missing")


def test_auto_mixed_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(training, "cpu_has_native_bf16", lambda native=native: native)
        assert training._mixed_precision("auto") == expected
        assert training._mixed_precision("no") == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # `accelerate launch --mixed_precision` decides
    assert training._mixed_precision("auto") is None


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one mixed-precision setting per process; these tests need another one and restore it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_bf16_autocast_on_cpu_learns_keeps_float32_weights_and_resumes_exactly(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    from accelerate.state import AcceleratorState

    data = rows(20)
    config = dict(max_steps=6, batch_size=8, lr=1e-2, warmup_steps=1, log_every=1, checkpoint_every=3)
    fp32 = train(
        tiny_t5(dropout=0.1),
        data,
        collate,
        TrainConfig(output_dir=str(tmp_path / "fp32"), mixed_precision="no", **config),
        progress=False,
    )
    AcceleratorState._reset_state(True)
    bf16 = dict(config, mixed_precision="bf16")
    straight = train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(tmp_path / "a"), **bf16),
                     progress=False)  # fmt: skip
    losses = [m["loss"] for m in metrics(tmp_path / "a")]
    assert losses[-1] < losses[0]
    assert straight.loss != fp32.loss  # autocast did run the matmuls in bf16
    assert abs(straight.loss - fp32.loss) < 0.05 * fp32.loss
    assert all(p.dtype == torch.float32 for p in straight.model.parameters())

    def die_after_step_4(model: torch.nn.Module) -> dict[str, float]:
        if len(calls) == 4:
            raise Killed
        calls.append(1)
        return {}

    calls: list[int] = []
    with pytest.raises(Killed):
        train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(tmp_path / "b"), eval_every=1, **bf16),
              evaluate=die_after_step_4, progress=False)  # fmt: skip
    resumed = train(tiny_t5(dropout=0.1), data, collate, TrainConfig(output_dir=str(tmp_path / "b"), **bf16),
                    resume=True, progress=False)  # fmt: skip
    assert resumed.loss == straight.loss
    assert_same_params(params(resumed), params(straight))


def test_a_resumed_run_logs_the_same_lines_when_a_checkpoint_falls_inside_a_log_window(tmp_path: Path) -> None:
    data = rows(24)
    config = dict(max_steps=8, batch_size=4, lr=1e-2, checkpoint_every=3, keep_checkpoints=0, log_every=2)
    train(tiny_t5(), data, collate, TrainConfig(output_dir=str(tmp_path / "a"), **config), progress=False)
    out_b = tmp_path / "b"
    train(tiny_t5(), data, collate, TrainConfig(output_dir=str(out_b), **config), progress=False)
    import shutil

    for later in (out_b / "checkpoints").glob("step-*"):
        if int(later.name[5:]) > 3:
            shutil.rmtree(later)  # as a kill after step 3 would leave it: the step-4 line averages steps 3 and 4
    train(tiny_t5(), data, collate, TrainConfig(output_dir=str(out_b), **config), resume=True, progress=False)
    lines_a, lines_b = metrics(tmp_path / "a"), metrics(out_b)
    assert [m["step"] for m in lines_b] == [2, 4, 6, 8]
    assert [m["loss"] for m in lines_b] == [m["loss"] for m in lines_a]


@pytest.mark.parametrize(("n", "batch", "group"), [(103, 8, 3), (96, 8, 50), (5, 8, 2), (64, 1, 4)])
def test_length_grouped_batches_are_a_permutation_cut_from_sorted_windows(n: int, batch: int, group: int) -> None:
    lengths = torch.randint(1, 30, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    sampler = LengthGroupedShuffle(lengths, batch, seed=3, group=group)
    loader = torch.utils.data.DataLoader(range(n), batch_size=batch, sampler=sampler)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = [b.tolist() for b in loader]  # the DataLoader's batches are exactly the sampler's groups
        orders.append([i for b in batches for i in b])
        assert sorted(orders[-1]) == list(range(n))
        assert all(len(b) == batch for b in batches[:-1])
        # every batch is a run of its window sorted by length: two batches of one window never interleave
        window_of = {}
        perm = EpochShuffle(n, 3)
        perm.set_epoch(epoch)
        for pos, i in enumerate(perm):
            window_of[i] = pos // (batch * group)
        for a in batches:
            for b in batches:
                if a is not b and window_of[a[0]] == window_of[b[0]]:
                    la, lb = [lengths[i] for i in a], [lengths[i] for i in b]
                    assert max(la) <= min(lb) or max(lb) <= min(la)
            assert len({window_of[i] for i in a}) == 1
        sampler.set_epoch(epoch)
        assert list(sampler) == orders[-1]  # depends only on (seed, epoch)
    if n > batch:
        assert orders[0] != orders[1]


def test_length_grouping_cuts_padding() -> None:
    lengths = [64 if i % 6 == 0 else 8 for i in range(6000)]
    plain, grouped = EpochShuffle(len(lengths), 0), LengthGroupedShuffle(lengths, 64, 0)

    def padded(sampler: EpochShuffle) -> int:
        order = list(sampler)
        return sum(max(lengths[i] for i in order[b : b + 64]) * 64 for b in range(0, len(order), 64))

    assert padded(grouped) < 0.4 * padded(plain)


def test_resume_refuses_a_change_of_grouping(tmp_path: Path) -> None:
    data, config = rows(16), dict(max_steps=2, batch_size=4, checkpoint_every=1, lr=1e-3)
    train(
        tiny_t5(),
        data,
        collate,
        TrainConfig(output_dir=str(tmp_path), **config),
        progress=False,
        lengths=[1 + i % 3 for i in range(16)],
    )
    with pytest.raises(ValueError, match="group_by_length"):
        train(
            tiny_t5(),
            data,
            collate,
            TrainConfig(output_dir=str(tmp_path), **{**config, "max_steps": 3}),
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="lengths has 3 entries"):
        train(
            tiny_t5(),
            data,
            collate,
            TrainConfig(output_dir=str(tmp_path / "x"), **config),
            progress=False,
            lengths=[1, 2, 3],
        )


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    result = train(tiny_t5(), rows(8), collate, TrainConfig(output_dir=str(tmp_path), max_steps=2, batch_size=4),
                   resume=True, progress=False)  # fmt: skip
    assert result.step == 2 and [m["step"] for m in metrics(tmp_path)] == [2]


class Recorder(GeneralTracker):
    """An in-memory accelerate tracker, standing in for tensorboard / wandb."""

    name, requires_logging_directory = "recorder", False

    def __init__(self) -> None:
        super().__init__()
        self.config: dict = {}
        self.logged: list[tuple[int | None, dict]] = []
        self.finished = False

    @property
    def tracker(self) -> Recorder:
        return self

    def store_init_configuration(self, values: dict) -> None:
        self.config = values

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.logged.append((step, values))

    def finish(self) -> None:
        self.finished = True


def test_trackers_get_the_metrics_lines(tmp_path: Path) -> None:
    recorder = Recorder()
    config = TrainConfig(output_dir=str(tmp_path), max_steps=4, batch_size=4, log_every=2, log_with=[recorder])
    train(tiny_t5(), rows(8), collate, config, progress=False)
    assert [step for step, _ in recorder.logged] == [2, 4]
    assert recorder.logged[0][1].keys() == {"epoch", "loss", "lr", "examples_per_s", "elapsed"}
    assert recorder.config["max_steps"] == 4 and recorder.finished


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_under_accelerate_launch(tmp_path: Path) -> None:
    # `accelerate launch --cpu` with more than one process goes through mpirun; the multi-process launcher
    # (torchrun) with ACCELERATE_USE_CPU=1 runs DDP over gloo on CPU instead.
    script = Path(__file__).with_name("_ddp_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # DDP kept the replicas identical
    assert ranks[0]["loss"] == ranks[1]["loss"]  # the reported loss is averaged over both processes
    losses = [m["loss"] for m in metrics(tmp_path / "a")]
    assert len(losses) == 12 and losses[-1] < 0.85 * losses[0]
    # 32 rows, 4 per process per step: each epoch the two processes see disjoint halves that cover every row
    for epoch in range(3):
        halves = [set(r["seen"][16 * epoch : 16 * (epoch + 1)]) for r in ranks]
        assert len(halves[0]) == len(halves[1]) == 16 and halves[0] | halves[1] == set(range(32))
    assert ranks[0]["seen"][:16] != ranks[0]["seen"][16:32]  # reshuffled per epoch
    # cut at step 6 (mid-epoch), resumed to 12: the same end as the straight run; one RNG file per process
    assert all(r["resumed_max_abs_diff"] < 1e-6 and r["resumed_loss"] == pytest.approx(r["loss"]) for r in ranks)
    assert [m["step"] for m in metrics(tmp_path / "b")] == list(range(1, 13))
    files = {p.name for p in (tmp_path / "b" / "checkpoints" / "step-12").iterdir()}
    assert {"model.safetensors", "random_states_0.pkl", "random_states_1.pkl", "trainer_state.json"} <= files
