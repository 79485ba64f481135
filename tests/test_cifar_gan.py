"""The CIFAR-scale inpainting GAN ("Image Inpainting Using Generative Adversarial Networks"): its
networks, losses, half-batch discriminator step, the CIFAR-10 binary reader and a smoke run."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from data.datasets import CIFAR10_RECORD, cifar10
from data.image_dataset import DatasetError
from pipeline.methods.cifar_gan.model import CifarGANGenerator, SharedTrunkDiscriminator
from pipeline.methods.cifar_gan.module import CifarGANModule, hole_mse
from pipeline.model import StageFeed


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def hole(batch: int = 4, size: int = 32) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., 8:18, 12:24] = 1
    return mask


def test_parameter_counts_are_pinned():
    assert count(CifarGANGenerator()) == 1_898_947
    assert count(SharedTrunkDiscriminator()) == 716_802


def test_generator_layout():
    layers = list(CifarGANGenerator().layers)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 512] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 4  # pooling after each encoder conv
    assert [m.p for m in layers if isinstance(m, nn.Dropout)] == [0.5]
    deconvs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.out_channels, d.kernel_size, d.stride) for d in deconvs] == [
        (128, (4, 4), (2, 2)), (64, (4, 4), (2, 2)), (32, (4, 4), (2, 2)), (3, (4, 4), (2, 2))
    ]  # fmt: skip


def test_full_width_forward_and_backward_at_32():
    torch.manual_seed(0)
    generator, discriminator = CifarGANGenerator(), SharedTrunkDiscriminator()
    mask = hole()
    y = generator(torch.cat([torch.rand(4, 3, 32, 32) * (1 - mask), mask], dim=1))
    assert y.shape == (4, 3, 32, 32) and y.min() >= 0 and y.max() <= 1
    logits = discriminator(y, mask)
    assert logits.shape == (4, 2)  # the global view and the local one
    logits.sum().backward()
    assert all(p.grad is not None for p in generator.parameters())


def test_the_local_view_scores_only_the_patches_over_the_hole():
    torch.manual_seed(0)
    discriminator = SharedTrunkDiscriminator(width_mult=0.25).eval()
    x, mask = torch.rand(2, 3, 32, 32), hole(2)
    mask[1] = 0  # no hole: every patch counts
    with torch.no_grad():
        logits = discriminator(x, mask)
        patches = discriminator.local_path(discriminator.trunk(x))[:, 0]  # (2, 8, 8)
    torch.testing.assert_close(logits[0, 1], patches[0, 2:5, 3:6].mean())  # rows 8..17, cols 12..23 at 1/4
    torch.testing.assert_close(logits[1, 1], patches[1].mean())


def tiny(**kwargs) -> CifarGANModule:
    return CifarGANModule(
        generator={"width_mult": 0.25}, discriminator={"width_mult": 0.25}, feed=StageFeed(), **kwargs
    )


def batch_of(n: int, size: int = 32) -> dict:
    image, mask = torch.rand(n, 3, size, size), hole(n, size)
    return {"image": image, "corrupted": image * (1 - mask), "mask": mask}


@pytest.mark.parametrize(("half_batch", "seen"), [(True, [2, 2]), (False, [4, 4])])
def test_the_discriminator_sees_half_the_batch_real_and_half_repaired(half_batch, seen):
    module = tiny(half_batch=half_batch)
    outputs = module.generate(batch_of(4))
    sizes = []
    hook = module.discriminator.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    module.discriminator_loss({}, outputs)
    hook.remove()
    assert sizes == seen


def test_the_generator_loss_is_the_papers_l2_pair():
    module = tiny()
    outputs = module.generate(batch_of(4))
    loss, logs = module.generator_loss({}, outputs)
    expected_mse = hole_mse(outputs["refined"], outputs["truth"], outputs["mask"])
    adversarial = ((module.discriminator(outputs["output"], outputs["mask"]) - 1) ** 2).mean()  # least squares
    torch.testing.assert_close(logs["g_mse"], expected_mse)
    torch.testing.assert_close(loss, 0.999 * expected_mse + 0.001 * adversarial)


def test_any_photo_is_repaired_at_32_and_only_its_hole_changes():
    module = tiny().eval()
    corrupted, mask = torch.rand(1, 3, 48, 64), torch.zeros(1, 1, 48, 64)
    mask[..., 10:30, 20:40] = 1
    with torch.no_grad():
        out = module(corrupted, mask)
    assert out["output"].shape == (1, 3, 48, 64)
    torch.testing.assert_close(out["output"] * (1 - mask), corrupted * (1 - mask))


def write_cifar(folder, per_batch: int = 6) -> None:
    """A CIFAR-10 binary layout of random images: label byte + 3072 pixel bytes per record."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rng.integers(0, 256, (per_batch, CIFAR10_RECORD), dtype=np.uint8).tofile(folder / name)


def test_cifar10_binary_batches_are_read_without_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder)
    sizes = {split: len(cifar10(split, root=str(tmp_path), val_images=4)) for split in ("train", "val", "test")}
    assert sizes == {"train": 26, "val": 4, "test": 6}
    raw = np.fromfile(folder / "test_batch.bin", dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    first = cifar10("test", root=str(folder))[0]  # the folder itself works too
    expected = torch.from_numpy(raw[0, 1:].reshape(3, 32, 32).astype(np.float32) / 255)
    torch.testing.assert_close(first, expected)  # channel planes in order, label skipped
    (folder / "data_batch_3.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        cifar10("train", root=str(tmp_path))


def test_without_cifar10_the_bundled_photos_stand_in(caplog):
    with caplog.at_level(logging.WARNING):
        dataset = cifar10("val", size=32)
    assert dataset.name == "sample:val" and dataset[0].shape == (3, 32, 32)
    assert "stand in for CIFAR-10" in caplog.text


def test_a_smoke_run_trains_and_scores_mse(tmp_path):
    from pipeline.training.stage import train
    from tests.conftest import compose_config

    cfg = compose_config(
        "train", "experiment=cifar_gan", "debug=smoke", f"logger.save_dir={tmp_path}",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert cfg.data.size == 32 and cfg.stage.name == "cifar_gan"
    train(cfg, tmp_path)
    metrics = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val/mse" in metrics and "val/ssim" in metrics and "train/g_mse" in metrics
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
