"""The one loader (common/checkpoint.py): safe reading of both formats, format versions, checked
configurations and weights, one error type."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from common.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build,
    fit_state,
    load_module,
    load_weights,
    read_model_file,
    stage_record,
    write_model_file,
)
from epn.module import EPNModule
from ipn.module import IPNModule
from mpn.module import MPNModule

TINY = {"generator": {"base_channels": 4, "depth": 2}}


class Exploit:
    """Unpickling this would run a command: what a hostile checkpoint looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _save_ckpt(path, module=None, kind="mpn", version=FORMAT_VERSION, config=None):
    module = module or MPNModule(**TINY)
    record = stage_record(kind)
    record["blindfill"]["format"] = version
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": config or dict(module.hparams), **record}, path)
    return path


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_model_file(path)
    assert not marker.exists()


def test_missing_truncated_foreign_and_wrong_kind(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_model_file(tmp_path / "nope.ckpt")
    good = _save_ckpt(tmp_path / "good.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_model_file(tmp_path / "cut.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no state_dict"):
        read_model_file(tmp_path / "other.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="not a blindfill checkpoint"):
        read_model_file(tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="holds a 'mpn' model, not 'epn'"):
        read_model_file(good, "epn")
    assert read_model_file(good, "mpn").kind == "mpn"
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_model_file(tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match="not a blindfill model"):
        read_model_file(tmp_path / "foreign.safetensors")


def test_older_and_newer_formats_get_a_clear_message(tmp_path):
    with pytest.raises(CheckpointError, match="older blindfill .format 1"):
        read_model_file(_save_ckpt(tmp_path / "old.ckpt", version=None))
    with pytest.raises(CheckpointError, match="newer blindfill .format 99"):
        read_model_file(_save_ckpt(tmp_path / "new.ckpt", version=99))
    module = MPNModule(**TINY)
    path = write_model_file(tmp_path / "m.safetensors", "mpn", dict(module.hparams), module.state_dict())
    assert read_model_file(path).kind == "mpn"
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the user's other accounts (safetensors writes 0600)
    save_file(
        {"x": torch.zeros(1)},
        str(tmp_path / "old.safetensors"),
        metadata={"format": "blindfill", "version": "1", "kind": "mpn", "config": "{}"},
    )
    with pytest.raises(CheckpointError, match="older blindfill"):
        read_model_file(tmp_path / "old.safetensors")


def test_both_formats_load_the_same_module(tmp_path):
    module = MPNModule(**TINY)
    ckpt = _save_ckpt(tmp_path / "m.ckpt", module)
    tensors = write_model_file(tmp_path / "m.safetensors", "mpn", dict(module.hparams), module.state_dict())
    x = torch.rand(1, 3, 16, 16)
    expected = module.eval()(x)["mask_logits"]
    for path in (ckpt, tensors):
        loaded = load_module(path, MPNModule)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert torch.equal(loaded(x)["mask_logits"], expected)


def test_configurations_are_checked_before_anything_is_allocated(tmp_path):
    with pytest.raises(CheckpointError, match="unknown MPNModule argument.*'evil'"):
        build(MPNModule, {"evil": 1}, "m.ckpt")
    with pytest.raises(CheckpointError, match="m.ckpt: MPNModule argument lr: .*could not be converted"):
        build(MPNModule, {"lr": "fast"}, "m.ckpt")
    with pytest.raises(CheckpointError, match="out of range"):  # 10^9 channels: terabytes, refused at once
        build(MPNModule, {"generator": {"base_channels": 10**9}}, "m.ckpt")
    with pytest.raises(CheckpointError, match="cannot build EPNModule: .*unexpected keyword"):
        build(EPNModule, {"generator": {"evil": 1}}, "m.ckpt")
    path = _save_ckpt(tmp_path / "huge.ckpt", config={"generator": {"base_channels": 10**9}})
    with pytest.raises(CheckpointError, match=r"huge.ckpt: cannot build MPNModule: .*out of range"):
        load_module(path, MPNModule)


def test_models_for_inference_are_built_without_their_training_only_parts(tmp_path):
    epn = EPNModule(generator={"base_channels": 4, "residual_blocks": 1}, discriminator={"base_channels": 4})
    path = _save_ckpt(tmp_path / "epn.ckpt", epn, "epn")
    loaded = load_module(path, EPNModule)
    assert loaded.discriminator is None  # not built; its weights in the file are skipped
    trainable = load_module(path, EPNModule, inference=False)
    assert trainable.discriminator is not None and trainable.training
    ipn = build(IPNModule, {"generator": {"cnum": 8}, "vgg_weights": "/nonexistent/vgg19.pth"}, "ipn.ckpt")
    assert ipn.frozen("vgg") is None  # the VGG loss network is training-only: its path is not even read


def test_weights_are_checked_by_name_and_shape(tmp_path):
    path = _save_ckpt(tmp_path / "w.ckpt")
    target = MPNModule(**TINY)
    load_weights(target, path)
    saved = read_model_file(path).state
    assert all(torch.equal(v, saved[k]) for k, v in target.state_dict().items())
    with pytest.raises(CheckpointError, match=r"w.ckpt \(were the widths changed\?\): .*shape differs"):
        load_weights(MPNModule(generator={"base_channels": 8, "depth": 2}), path)
    state = dict(saved)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected: extra.weight"):
        fit_state(target, state, "w.ckpt")
    del state["extra.weight"], state[next(iter(state))]
    with pytest.raises(CheckpointError, match="missing"):
        fit_state(target, state, "w.ckpt")


def test_safetensors_config_is_plain_json(tmp_path):
    module = MPNModule(**TINY)
    path = write_model_file(tmp_path / "m.safetensors", "mpn", dict(module.hparams), module.state_dict())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["kind"] == "mpn" and metadata["version"] == str(FORMAT_VERSION)
    assert json.loads(metadata["config"])["generator"] == TINY["generator"]


def test_a_files_config_never_names_code_to_run(tmp_path):
    """Hydra targets in a file's config are plain data to the loader: nothing is instantiated, and
    what a stage is fed in training is never taken from a file."""
    marker = tmp_path / "pwned"
    hostile = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    epn = build(EPNModule, {"generator": {"base_channels": 4, "residual_blocks": 1}, "feed": hostile}, "e.ckpt")
    assert epn.frozen("feed") is None and not marker.exists()
    with pytest.raises(CheckpointError, match="unknown MPNModule argument"):
        build(MPNModule, {"_target_": "os.system"}, "m.ckpt")
