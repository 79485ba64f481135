import numpy as np
import pytest
import torch
from PIL import Image

from data.datasets import celeba, image_folder, paris_streetview, places2, read_flist
from data.image_dataset import DatasetError, SquareCrop
from data.io import ImageReadError
from data.sample import SPLIT_PHOTOS, sample
from tests.conftest import write_photo

SIZE = 32


def _assert_images(ds, n=None):
    if n is not None:
        assert len(ds) == n
    rng = np.random.default_rng(0)
    for i in range(min(len(ds), 3)):
        for img in (ds[i], ds.get(i, rng)):
            assert img.shape == (3, SIZE, SIZE) and img.dtype == torch.float32
            assert img.min() >= 0 and img.max() <= 1


def test_folder_hash_split_partitions_all_files(photo_folder):
    splits = {
        s: image_folder(s, SIZE, root=photo_folder, fractions=(0.5, 0.25, 0.25)) for s in ("train", "val", "test")
    }
    files = [f for ds in splits.values() for f in ds.items]
    assert len(files) == 12 and len(set(files)) == 12
    _assert_images(splits["train"])
    # stable: the same split twice
    assert image_folder("val", SIZE, root=photo_folder, fractions=(0.5, 0.25, 0.25)).items == splits["val"].items


def test_folder_split_subfolders_and_flists(tmp_path, photo_folder):
    root = tmp_path / "split"
    for s, n in (("train", 3), ("val", 2), ("test", 1)):
        for i in range(n):
            write_photo(root / s / f"{i}.png", seed=i)
    assert [len(image_folder(s, SIZE, root=root)) for s in ("train", "val", "test")] == [3, 2, 1]

    files = sorted(photo_folder.rglob("*.png"))
    flist = tmp_path / "train.flist"
    flist.write_text("# EdgeConnect style\n" + "\n".join(str(f) for f in files[:4]) + "\n\n")
    rel = photo_folder / "rel.flist"
    rel.write_text("\n".join(str(f.relative_to(photo_folder)) for f in files[4:]))
    assert read_flist(flist) == files[:4]
    assert read_flist(rel) == files[4:]
    _assert_images(image_folder("train", SIZE, root=None, train_flist=flist), 4)
    _assert_images(image_folder("test", SIZE, root=rel), len(files) - 4)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="not set"):
        image_folder("train", SIZE, root=None)
    with pytest.raises(DatasetError, match="nowhere"):
        image_folder("train", SIZE, root=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(DatasetError, match="no images under .*empty"):
        image_folder("train", SIZE, root=tmp_path / "empty")
    with pytest.raises(DatasetError, match="unknown split"):
        image_folder("training", SIZE, root=tmp_path)
    with pytest.raises(DatasetError, match="lists no images"):
        (tmp_path / "e.flist").write_text("\n")
        read_flist(tmp_path / "e.flist")


def test_celeba_official_split_and_face_crop(tmp_path):
    root = tmp_path / "celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    (root / "img_align_celeba").mkdir(parents=True)
    arr = np.full((218, 178, 3), 128, np.uint8)
    arr[:20] = 255  # the band above the face crop must be cut away
    arr[198:] = 0
    for name in names:
        Image.fromarray(arr).save(root / "img_align_celeba" / name)
    codes = [0, 0, 0, 0, 1, 1, 2]
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {c}\n" for n, c in zip(names, codes)))
    assert [len(celeba(s, SIZE, root=root)) for s in ("train", "val", "test")] == [4, 2, 1]
    face = celeba("test", SIZE, root=root)[0]
    assert face.shape == (3, SIZE, SIZE)
    assert torch.allclose(face, torch.full_like(face, 128 / 255), atol=2 / 255)  # no white or black band

    (root / "list_eval_partition.txt").unlink()  # no split file: stable hash split of everything
    assert 0 < len(celeba("train", SIZE, root=root)) <= 7


def test_celeba_root_unset_mentions_env_var():
    with pytest.raises(DatasetError, match="CELEBA_ROOT"):
        celeba("train", SIZE, root=None)


def test_paris_streetview_layout(tmp_path):
    root = tmp_path / "psv"
    for i in range(3):
        write_photo(root / "paris_train_original" / f"{i}.JPG", 936, 537, seed=i)
    for i in range(2):
        write_photo(root / "paris_eval_gt" / f"{i:03d}_im.png", 227, 227, seed=10 + i)
    train, test = paris_streetview("train", SIZE, root=root), paris_streetview("test", SIZE, root=root)
    _assert_images(train, 3)
    _assert_images(test, 2)
    assert train.crop.mode == "random" and test.crop.mode == "centre"
    with pytest.raises(DatasetError, match="paris_train_original"):
        paris_streetview("train", SIZE, root=tmp_path / "psv" / "paris_eval_gt")


def test_places2_split_files(tmp_path):
    root = tmp_path / "places"
    rels = ["a/abbey/00000001.jpg", "a/abbey/00000002.jpg", "b/bar/00000001.jpg"]
    for i, rel in enumerate(rels):
        write_photo(root / "data_256" / rel, 64, 64, seed=i)
    (root / "places365_train_standard.txt").write_text("".join(f"/{r} {i}\n" for i, r in enumerate(rels[:2])))
    for i in range(2):
        write_photo(root / "val_256" / f"Places365_val_{i + 1:08d}.jpg", 64, 64, seed=i)
    (root / "places365_val.txt").write_text("Places365_val_00000001.jpg 165\n")
    _assert_images(places2("train", SIZE, root=root), 2)  # the list, not the folder, decides
    _assert_images(places2("val", SIZE, root=root), 1)
    (root / "places365_val.txt").unlink()
    _assert_images(places2("test", SIZE, root=root), 2)


def test_square_crop_random_centre_and_too_small():
    img = torch.rand(3, 50, 80)
    centre = SquareCrop(SIZE, "centre")(img, None)
    assert torch.equal(centre, SquareCrop(SIZE, "random")(img, None))  # no rng: deterministic centre
    a = SquareCrop(SIZE, "random")(img, np.random.default_rng(1))
    b = SquareCrop(SIZE, "random")(img, np.random.default_rng(2))
    assert a.shape == (3, SIZE, SIZE) and not torch.equal(a, b)
    with pytest.raises(ImageReadError, match="tiny.png: 6×5 px is too small"):
        SquareCrop(SIZE)(torch.rand(3, 5, 6), None, name="tiny.png")
    with pytest.raises(ValueError, match="scale"):
        SquareCrop(SIZE, scale=(0.0, 1.0))


def test_sample_set_is_split_by_photo_and_fixed():
    assert not set(SPLIT_PHOTOS["train"]) & (set(SPLIT_PHOTOS["val"]) | set(SPLIT_PHOTOS["test"]))
    train = sample("train", SIZE, repeat=2)
    assert len(train) == 2 * len(SPLIT_PHOTOS["train"])
    _assert_images(train)
    test = sample("test", SIZE, crops_per_photo=4)
    assert len(test) == 4 * len(SPLIT_PHOTOS["test"])
    again = sample("test", SIZE, crops_per_photo=4)
    assert all(torch.equal(test[i], again[i]) for i in range(len(test)))
    assert not torch.equal(test[0], test[1])  # multi-scale crops, not one crop repeated
