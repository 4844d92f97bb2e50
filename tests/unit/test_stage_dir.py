import zipfile
from pathlib import Path

from alignops.stages.training import StageDir


def _checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"x" * 100)
    return path


def test_resume_point_prefers_last_and_skips_a_truncated_one(home: Path) -> None:
    stage = StageDir("pretrain", {"cfg": 1})
    assert stage.resume_point() == (None, None)
    stage.started("run-1")
    assert stage.resume_point() == ("run-1", None)

    step = _checkpoint(stage.checkpoints / "step-step=20.ckpt")
    last = _checkpoint(stage.checkpoints / "last.ckpt")
    assert stage.resume_point() == ("run-1", last)

    last.write_bytes(last.read_bytes()[:50])  # killed while writing last.ckpt
    assert stage.resume_point() == ("run-1", step)


def test_a_completed_stage_starts_over(home: Path) -> None:
    stage = StageDir("sft", {"cfg": 2})
    stage.started("run-2")
    _checkpoint(stage.checkpoints / "last.ckpt")
    stage.completed("run-2")
    assert stage.resume_point() == (None, None)
    assert not stage.path.exists()
