"""A training run's checkpoints: ``OUTPUT_DIR/checkpoints/step-N`` folders written atomically (a temporary
folder renamed into place), the newest kept, found again on resume; a fresh run refuses a folder holding another
run's checkpoints."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


def save_checkpoint(accelerator: Any, out: Path, state: dict[str, Any], keep: int) -> Path:
    """accelerator.save_state into checkpoints/.tmp-step-N, add trainer_state.json, rename, prune old ones."""
    root = out / "checkpoints"
    final, tmp = root / f"step-{state['step']}", root / f".tmp-step-{state['step']}"
    if accelerator.is_main_process:
        for stale in root.glob(".tmp-step-*"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if keep > 0:
            for old in checkpoints(out)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (step-N with a trainer_state.json), oldest first."""
    root = out / "checkpoints"
    found = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def refuse_mixed_runs(output_dir: str | os.PathLike, resume: bool) -> None:
    """``FileExistsError`` when a fresh run (``resume=False``) would write into a folder holding an earlier run's
    checkpoints; callers check this before any work, :func:`train` checks it again."""
    checkpoint = latest_checkpoint(Path(output_dir))
    if checkpoint is not None and not resume:
        raise FileExistsError(
            f"{output_dir} holds checkpoints of an earlier run ({checkpoint.name}): pass "
            "resume=True (CLI: --resume) to continue it, or choose another output_dir"
        )


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoints(out)
    return found[-1] if found else None


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
