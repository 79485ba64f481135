import os

import pytest
import torch
from torch import nn

from common.checkpoint import STAGE_KEY, CheckpointError, load_checkpoint, load_weights


class Exploit:
    """Unpickling this would run a command: what a hostile checkpoint looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _save(path, stage="mpn", model=None):
    model = model or nn.Linear(2, 3)
    torch.save({"state_dict": model.state_dict(), STAGE_KEY: {"stage": stage}}, path)
    return path


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_truncated_foreign_and_wrong_stage(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    good = _save(tmp_path / "good.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="stage 'mpn', not 'epn'"):
        load_checkpoint(good, stage="epn")
    assert load_checkpoint(good, stage="mpn")[STAGE_KEY]["stage"] == "mpn"


def test_load_weights_checks_shapes(tmp_path):
    path = _save(tmp_path / "w.ckpt", model=nn.Linear(2, 3))
    target = nn.Linear(2, 3)
    load_weights(target, path)
    assert torch.equal(target.weight, torch.load(path, weights_only=True)["state_dict"]["weight"])
    with pytest.raises(CheckpointError, match="shape differs: bias, weight"):
        load_weights(nn.Linear(2, 4), path)
