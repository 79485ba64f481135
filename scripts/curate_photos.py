"""Rebuild the bundled sample photos: ``data/photos/<name>.jpg`` and ``data/photos/LICENSES.md``.

The 32 photos come from sources whose licences allow redistribution: scikit-image and
scikit-learn sample images (read through their loaders) and two Debian bookworm wallpaper
packages (plasma-workspace-wallpapers 4:5.27.5-2, lomiri-wallpapers-16.04 / -20.04 20.04.0-2).
Every photo is written RGB, long side resized to at most 512 px (Pillow LANCZOS, aspect kept),
as JPEG quality 92 without metadata. The licence of each Debian file is checked against the
package's own records (``metadata.json`` for plasma, the DEP-5 ``copyright`` file for lomiri)
and the script stops on any mismatch. Fetch and unpack the packages first::

    mkdir -p /tmp/debs/x && cd /tmp/debs
    apt-get download plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
    for deb in *.deb; do dpkg-deb -x "$deb" "x/${deb%%_*}"; done

then, from the repository root::

    .venv/bin/python scripts/curate_photos.py --debs /tmp/debs/x

Some image sets are deliberately not used, so that they stay unseen for independent evaluation:
Debian's mate-backgrounds, matplotlib's sample data, PyWavelets' and mahotas' images.
``--outside DIR`` writes the first of them, mate-backgrounds' nature photos (``apt-get download
mate-backgrounds`` and unpack it as above), to ``DIR/test/`` for evaluation only::

    .venv/bin/python scripts/curate_photos.py --debs /tmp/debs/x --outside /tmp/outside
    .venv/bin/python -m pipeline.evaluate data=folder data.dataset.root=/tmp/outside data.size=256 mode=masked
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

OUT = Path(__file__).parent / "photos"
LONG_SIDE = 512
QUALITY = 92

PLASMA = ("plasma-workspace-wallpapers", "4:5.27.5-2")
LOMIRI_16 = ("lomiri-wallpapers-16.04", "20.04.0-2")
LOMIRI_20 = ("lomiri-wallpapers-20.04", "20.04.0-2")

LICENCE_URLS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-2.0": "https://creativecommons.org/licenses/by/2.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-3.0": "https://creativecommons.org/licenses/by-sa/3.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "LGPL-3.0-only": "https://www.gnu.org/licenses/lgpl-3.0.html (with https://www.gnu.org/licenses/gpl-3.0.html)",
}


@dataclasses.dataclass(frozen=True)
class Photo:
    """One curated photo: where it comes from and under which terms."""

    name: str  # output file stem
    source: str  # Python package or Debian package, with its version
    origin: str  # loader call, or path inside the package
    title: str
    author: str
    licence: str  # SPDX id; "public domain" or NOASSERTION where there is none
    link: str = ""  # where the original was published, when the source says
    note: str = ""  # a caveat, or the copyright notice the licence asks to keep


# scikit-image / scikit-learn: author, licence and link as their docstrings and README state them.
PYTHON_PHOTOS = (
    Photo(
        "skimage_astronaut",
        "scikit-image",
        "skimage.data.astronaut()",
        "Eileen Collins",
        "NASA",
        "public domain",
        "https://flic.kr/p/r9qvLn",
    ),
    Photo(
        "skimage_chelsea", "scikit-image", "skimage.data.chelsea()", "Chelsea the cat", "Stefan van der Walt", "CC0-1.0"
    ),
    Photo(
        "skimage_coffee",
        "scikit-image",
        "skimage.data.coffee()",
        "Coffee cup",
        "Rachel Michetti (courtesy of Pikolo Espresso Bar)",
        "CC0-1.0",
    ),
    Photo(
        "skimage_rocket",
        "scikit-image",
        "skimage.data.rocket()",
        "Launch of DSCOVR on Falcon 9",
        "SpaceX",
        "public domain",
        "https://www.flickr.com/photos/spacexphotos/16511594820/",
    ),
    Photo(
        "skimage_camera",
        "scikit-image",
        "skimage.data.camera()",
        "camera (grayscale, repeated to RGB)",
        "Lav Varshney",
        "CC0-1.0",
    ),
    Photo(
        "sklearn_china",
        "scikit-learn",
        'sklearn.datasets.load_sample_image("china.jpg")',
        "china.jpg",
        "danielbuechele",
        "CC-BY-2.0",
        "https://www.flickr.com/photos/danielbuechele/6061409035/",
    ),
    Photo(
        "sklearn_flower",
        "scikit-learn",
        'sklearn.datasets.load_sample_image("flower.jpg")',
        "flower.jpg",
        "vultilion",
        "CC-BY-2.0",
        "https://www.flickr.com/photos/vultilion/6056698931/",
        "scikit-learn's README credits danielbuechele, but its links are to vultilion's photostream",
    ),
)

# Debian wallpapers: output name, package, folder or file stem, expected licence. Authors and
# titles are read from the packages, whose licences are checked again on every run.
PLASMA_PHOTOS = (
    ("plasma_bythewater", "BytheWater"),
    ("plasma_coldripple", "ColdRipple"),
    ("plasma_colorfulcups", "ColorfulCups"),
    ("plasma_darkesthour", "DarkestHour"),
    ("plasma_eveningglow", "EveningGlow"),
    ("plasma_fallenleaf", "FallenLeaf"),
    ("plasma_grey", "Grey"),
    ("plasma_kite", "Kite"),
    ("plasma_onestandsout", "OneStandsOut"),
    ("plasma_path", "Path"),
    ("plasma_summer_1am", "summer_1am"),
)
LOMIRI_PHOTOS = (
    ("lomiri_bridge", LOMIRI_16, "Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0"),
    ("lomiri_dragonfly", LOMIRI_16, "Dragonfly_by_Bolly", "CC-BY-SA-4.0"),
    ("lomiri_picture0b", LOMIRI_16, "Picture_0B_by_freespace", "CC-BY-4.0"),
    ("lomiri_picture1a", LOMIRI_16, "Picture_1A_by_freespace", "CC-BY-4.0"),
    ("lomiri_wine", LOMIRI_16, "Wine_by_Jakkub_Mede", "CC-BY-4.0"),
    ("lomiri_aitzgorri", LOMIRI_16, "aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0"),
    ("lomiri_free", LOMIRI_16, "free_by_Peter_Nerlich", "CC-BY-SA-4.0"),
    ("lomiri_friends", LOMIRI_16, "friends_by_Aitzol_Berasategi", "CC-BY-4.0"),
    ("lomiri_greentock", LOMIRI_16, "greentock_by_Peter_Nerlich", "CC-BY-SA-4.0"),
    ("lomiri_life", LOMIRI_16, "life_by_Aitzol_Berasategi", "CC-BY-4.0"),
    ("lomiri_picosdeeuropa", LOMIRI_16, "picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0"),
    ("lomiri_seeding", LOMIRI_16, "seeding_by_Clements_Engelhardt", "CC0-1.0"),
    ("lomiri_sunset", LOMIRI_16, "sunset_by_Aitzol_Berasategi", "CC-BY-4.0"),
    ("lomiri_kleiber", LOMIRI_20, "Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0"),
)


# --- reading the sources -------------------------------------------------------------------------


def _python_array(name: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 of one scikit-image / scikit-learn photo."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    kind, short = name.split("_", 1)
    array = load_sample_image(f"{short}.jpg") if kind == "sklearn" else getattr(skimage.data, short)()
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def _plasma(debs: Path, name: str, folder: str) -> tuple[Photo, Path]:
    """The wallpaper's largest image, its authors from ``metadata.json`` and its checked licence."""
    root = debs / PLASMA[0] / "usr/share/wallpapers" / folder
    plugin = json.loads((root / "metadata.json").read_text())["KPlugin"]
    if plugin.get("License") != "LGPLv3":
        raise SystemExit(f"{root}: licence {plugin.get('License')!r}, expected 'LGPLv3'")
    images = [p for p in (root / "contents/images").iterdir() if not p.is_symlink()]
    largest = max(images, key=lambda p: p.stat().st_size)
    authors = ", ".join(a["Name"] for a in plugin["Authors"])
    origin = f"/{largest.relative_to(debs / PLASMA[0])}"
    photo = Photo(name, f"Debian {PLASMA[0]} {PLASMA[1]}", origin, plugin["Name"], authors, "LGPL-3.0-only")
    return photo, largest


def _dep5_stanzas(text: str) -> dict[str, dict[str, str]]:
    """``Files`` pattern -> its fields, from a Debian machine-readable copyright file."""
    stanzas = {}
    for block in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Files" in fields:
            for pattern in fields["Files"].split():
                stanzas[pattern] = fields
    return stanzas


def _lomiri(debs: Path, name: str, package: tuple[str, str], stem: str, licence: str) -> tuple[Photo, Path]:
    """The wallpaper and its copyright holder, with the licence checked against Debian's record."""
    root = debs / package[0]
    path = root / "usr/share/backgrounds" / f"{stem}.jpg"
    copyright_file = root / "usr/share/doc" / package[0] / "copyright"
    raw = copyright_file.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    series = package[0].rsplit("-", 1)[1]
    fields = _dep5_stanzas(text).get(f"{series}/{stem}.jpg")
    if fields is None or fields.get("License") != licence:
        got = None if fields is None else fields.get("License")
        raise SystemExit(f"{copyright_file}: {stem}.jpg is licensed {got!r}, expected {licence!r}")
    author = re.sub(r"\b(19|20)\d\d\b", "", fields["Copyright"]).strip(" ,.")  # "2018. Sander Klootwijk"
    title = stem.split("_by_")[0]
    source = f"Debian {package[0]} {package[1]}"
    notice = f"copyright notice as supplied: {fields['Copyright']}"
    return Photo(name, source, f"/{path.relative_to(root)}", title, author, licence, note=notice), path


# --- writing -------------------------------------------------------------------------------------


def _resized(image: Image.Image) -> Image.Image:
    """RGB with the long side at most :data:`LONG_SIDE` px (LANCZOS, aspect kept)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    scale = LONG_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image


def _save(image: Image.Image, out: Path) -> None:
    _resized(image).save(out, "JPEG", quality=QUALITY, optimize=True)


def _attribution(photo: Photo) -> str:
    """Title, author, source and licence (the TASL credit CC-BY asks for), and the modification."""
    link = f" ({photo.link})" if photo.link else ""
    line = f'"{photo.title}" by {photo.author}{link}, {photo.licence}, from {photo.source}; resized and re-encoded'
    return f"{line}. Note: {photo.note}" if photo.note else line


def licences_markdown(photos: list[Photo]) -> str:
    """``LICENSES.md``: one table row per photo, then the licence texts' URLs."""
    rows = [
        f"| `{p.name}.jpg` | {p.source} | `{p.origin}` | {p.author} | {p.licence} | {_attribution(p)} |" for p in photos
    ]
    used = sorted({p.licence for p in photos} & set(LICENCE_URLS))
    urls = [f"- {spdx}: {LICENCE_URLS[spdx]}" for spdx in used]
    return "\n".join(
        [
            "# Licences of the bundled sample photos",
            "",
            "These photos are not covered by the project's Apache-2.0 licence: each stays under its own",
            "licence, listed below. Every file is a **modified** version of its original: converted to RGB,",
            f"resized so that its long side is at most {LONG_SIDE} px (Pillow LANCZOS, aspect kept) and",
            f"re-encoded as JPEG quality {QUALITY} without metadata, by `scripts/curate_photos.py`, which also",
            "rebuilds this file. The unmodified originals are in the packages named in the Source column.",
            "",
            'Plasma wallpapers: their `metadata.json` states `LGPLv3` (read as LGPL-3.0-only, no "or later"',
            "is given); Debian's copyright file for that package lists a blanket `Files: *` GPL-2+ instead.",
            "Lomiri wallpapers: licence and copyright holder as recorded in the package's DEP-5 copyright file.",
            "",
            "| File | Source | Original | Author / copyright | Licence (SPDX) | Attribution |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "## Licence texts",
            "",
            *urls,
            "- public domain: no licence; NASA and SpaceX released these photos without copyright restrictions.",
            "- NOASSERTION: no licence is stated by the source; see the row's note.",
            "",
        ]
    )


def curate(debs: Path, out: Path = OUT) -> list[Photo]:
    """Write every photo to ``out`` and ``out/LICENSES.md``; returns the photos' records."""
    out.mkdir(parents=True, exist_ok=True)
    versions = {p: importlib.metadata.version(p) for p in ("scikit-image", "scikit-learn")}
    photos = []
    for photo in PYTHON_PHOTOS:
        photo = dataclasses.replace(photo, source=f"{photo.source} {versions[photo.source]}")
        _save(Image.fromarray(_python_array(photo.name)), out / f"{photo.name}.jpg")
        photos.append(photo)
    debian = [_plasma(debs, *args) for args in PLASMA_PHOTOS] + [_lomiri(debs, *args) for args in LOMIRI_PHOTOS]
    for photo, path in debian:
        with Image.open(path) as image:
            _save(image, out / f"{photo.name}.jpg")
        photos.append(photo)
    (out / "LICENSES.md").write_text(licences_markdown(photos))
    return photos


# --- the outside set: photos never trained, validated or selected on ------------------------------

MATE = ("mate-backgrounds", "1.26.0-1")


def outside_photos(debs: Path) -> list[tuple[Photo, Path]]:
    """Debian mate-backgrounds' twelve nature photos (flowers, wood, grass, dunes, a ladybird...),
    each with its copyright holder and licence from the package's DEP-5 copyright file."""
    root = debs / MATE[0]
    raw = (root / "usr/share/doc" / MATE[0] / "copyright").read_bytes()
    stanzas = _dep5_stanzas((gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode())
    photos = []
    for path in sorted((root / "usr/share/backgrounds/mate/nature").glob("*.jpg")):
        fields = stanzas.get(f"nature/{path.name}")
        if fields is None:
            raise SystemExit(f"{MATE[0]}: no copyright stanza for nature/{path.name}")
        author = re.sub(r"\b(19|20)\d\d\b,?", "", fields["Copyright"]).strip(" ,.")
        name = f"mate_{path.stem.lower()}"
        photo = Photo(name, f"Debian {MATE[0]} {MATE[1]}", f"/{path.relative_to(root)}", path.stem, author,
                      fields["License"], note=f"copyright notice as supplied: {fields['Copyright']}")  # fmt: skip
        photos.append((photo, path))
    return photos


def write_outside(debs: Path, out: Path) -> list[Photo]:
    """The outside set in ``out/test/`` (long side at most 512 px, as the bundled photos) with
    ``out/LICENSES.md``: ``pipeline.evaluate data=folder data.dataset.root=OUT`` scores it."""
    (out / "test").mkdir(parents=True, exist_ok=True)
    photos = []
    for photo, path in outside_photos(debs):
        with Image.open(path) as image:
            _save(image, out / "test" / f"{photo.name}.jpg")
        photos.append(photo)
    text = licences_markdown(photos).replace("bundled sample photos", "outside evaluation photos")
    (out / "LICENSES.md").write_text(text)
    return photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debs", type=Path, default=Path("/tmp/debs/x"), help="folder of the unpacked packages")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--outside", type=Path, default=None, help="write the outside evaluation set (mate-backgrounds) here instead"
    )
    args = parser.parse_args(argv)
    if args.outside is not None:
        photos = write_outside(args.debs, args.outside)
        print(f"wrote {len(photos)} outside photos to {args.outside / 'test'} and LICENSES.md to {args.outside}")
        return
    photos = curate(args.debs, args.out)
    total = sum((args.out / f"{p.name}.jpg").stat().st_size for p in photos)
    print(f"wrote {len(photos)} photos ({total / 1e6:.2f} MB) and LICENSES.md to {args.out}")


if __name__ == "__main__":
    main()
