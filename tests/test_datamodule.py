import logging

import pytest
import torch

from data.corruption import Corruptor
from data.datamodule import InpaintingDataModule, InpaintingSamples
from data.datasets import image_folder
from data.image_dataset import DatasetError
from data.masks import FreeFormMasks
from data.sample import sample
from tests.conftest import write_photo

SIZE = 32


def _module(dataset=None, **kwargs):
    defaults = dict(size=SIZE, batch_size=4, num_workers=0, edges=True)
    defaults.update(kwargs)
    return InpaintingDataModule(
        dataset=dataset or (lambda split, size: sample(split, size, repeat=2, crops_per_photo=2)),
        masks=FreeFormMasks(),
        corruption=Corruptor(),
        **defaults,
    )


def test_batches_follow_the_contract():
    dm = _module()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "corrupted", "mask", "edge", "corrupted_edge"}
    assert batch["image"].shape == batch["corrupted"].shape == (4, 3, SIZE, SIZE)
    assert batch["mask"].shape == batch["edge"].shape == batch["corrupted_edge"].shape == (4, 1, SIZE, SIZE)
    for key in batch:
        assert batch[key].dtype == torch.float32 and batch[key].min() >= 0 and batch[key].max() <= 1
    assert set(torch.unique(batch["edge"]).tolist()) <= {0.0, 1.0}
    assert set(torch.unique(batch["corrupted_edge"]).tolist()) <= {0.0, 1.0}
    # one mask per sample, not per batch
    masks = batch["mask"].flatten(1)
    assert len({tuple(m.tolist()) for m in masks}) == 4
    known = batch["mask"] == 0
    assert torch.equal(
        batch["corrupted"][known.expand_as(batch["image"])], batch["image"][known.expand_as(batch["image"])]
    )


def test_validation_is_deterministic_and_training_is_not():
    a, b = _module(), _module()
    val_a, val_b = a.split("val"), b.split("val")
    for i in range(len(val_a)):
        x, y = val_a[i], val_b[i]
        assert all(torch.equal(x[k], y[k]) for k in x)
    train = a.split("train")
    assert not torch.equal(train[0]["mask"], train[0]["mask"])


def test_training_is_reproducible_under_a_seed():
    from lightning import seed_everything

    draws = []
    for _ in range(2):
        seed_everything(7, workers=True)
        draws.append(_module().split("train")[3]["corrupted"])
    assert torch.equal(*draws)


def test_no_edges_unless_asked():
    assert "edge" not in _module(edges=False).split("val")[0]


def test_random_sigma_when_zero():
    s = _module(edge_sigma=0).split("val")[0]
    assert s["edge"].shape == (1, SIZE, SIZE)


def test_bad_files_are_reported_and_skipped(tmp_path, caplog):
    root = tmp_path / "mixed"
    for i in range(6):
        write_photo(root / f"good{i}.png", 48, 40, seed=i)
    (root / "junk.png").write_bytes(b"\x89PNG not really")
    good = (root / "good0.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    write_photo(root / "tiny.png", 4, 4)
    dm = _module(dataset=lambda split, size: image_folder(split, size, root=root, fractions=(1, 0, 0)), batch_size=3)
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 9 files, 3 of them unusable but the epoch is complete
    assert dm.skipped_files == 3
    for name in ("junk.png", "truncated.png", "tiny.png"):
        assert any(name in r.getMessage() for r in caplog.records)


def test_bad_files_are_counted_across_workers(tmp_path):
    root = tmp_path / "w"
    for i in range(4):
        write_photo(root / f"good{i}.png", 48, 40, seed=i)
    for i in range(2):
        (root / f"bad{i}.jpg").write_bytes(b"nope")
    dm = _module(
        dataset=lambda split, size: image_folder(split, size, root=root, fractions=(1, 0, 0)),
        batch_size=2,
        num_workers=2,
        donor_fill=False,
    )
    assert sum(b["image"].shape[0] for b in dm.train_dataloader()) == 6
    assert dm.skipped_files == 2


def test_a_folder_of_only_bad_files_stops_clearly(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(3):
        (root / f"b{i}.png").write_bytes(b"x")
    samples = InpaintingSamples(
        image_folder("train", SIZE, root=root, fractions=(1, 0, 0)),
        FreeFormMasks(),
        Corruptor(),
        train=True,
        max_skips=3,
    )
    with pytest.raises(DatasetError, match="unreadable images in a row"):
        samples[0]


def test_size_must_be_a_multiple_of_eight():
    with pytest.raises(ValueError, match="multiple of 8"):
        _module(size=30)
