"""Datasets stored as image files: TinyImageNet-200 and any folder in torchvision's ImageFolder
layout (`imagefolder:PATH`). Both are decoded once into uint8 tensors and cached beside the
images; bench/data/decoded.py ties each cache to a fingerprint of the files it came from.

A folder is validated before anything is decoded or cached, and errors name the problem in the
folder's own terms (class ids, file names), so a rejected folder leaves no cache behind and a
folder fixed in place loads on the next run.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs

from bench.catalog import DATASETS
from bench.data.datasets import DataError, DatasetSpec, Split, register_dataset
from bench.data.decoded import decode_images, image_size_of, load_or_decode

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# ---------------------------------------------------------------------------------------------
# TinyImageNet-200

# The 200 WordNet ids of the official release (wnids.txt, in its order). Copies that circulate
# add classes (n02480855 and n10148035 are known); checking against this list names them.
TINY_WNIDS = tuple("""
n02124075 n04067472 n04540053 n04099969 n07749582 n01641577 n02802426 n09246464 n07920052 n03970156
n03891332 n02106662 n03201208 n02279972 n02132136 n04146614 n07873807 n02364673 n04507155 n03854065
n03838899 n03733131 n01443537 n07875152 n03544143 n09428293 n03085013 n02437312 n07614500 n03804744
n04265275 n02963159 n02486410 n01944390 n09256479 n02058221 n04275548 n02321529 n02769748 n02099712
n07695742 n02056570 n02281406 n01774750 n02509815 n03983396 n07753592 n04254777 n02233338 n04008634
n02823428 n02236044 n03393912 n07583066 n04074963 n01629819 n09332890 n02481823 n03902125 n03404251
n09193705 n03637318 n04456115 n02666196 n03796401 n02795169 n02123045 n01855672 n01882714 n02917067
n02988304 n04398044 n02843684 n02423022 n02669723 n04465501 n02165456 n03770439 n02099601 n04486054
n02950826 n03814639 n04259630 n03424325 n02948072 n03179701 n03400231 n02206856 n03160309 n01984695
n03977966 n03584254 n04023962 n02814860 n01910747 n04596742 n03992509 n04133789 n03937543 n02927161
n01945685 n02395406 n02125311 n03126707 n04532106 n02268443 n02977058 n07734744 n03599486 n04562935
n03014705 n04251144 n04356056 n02190166 n03670208 n02002724 n02074367 n04285008 n04560804 n04366367
n02403003 n07615774 n04501370 n03026506 n02906734 n01770393 n04597913 n03930313 n04118538 n04179913
n04311004 n02123394 n04070727 n02793495 n02730930 n02094433 n04371430 n04328186 n03649909 n04417672
n03388043 n01774384 n02837789 n07579787 n04399382 n02791270 n03089624 n02814533 n04149813 n07747607
n03355925 n01983481 n04487081 n03250847 n03255030 n02892201 n02883205 n03100240 n02415577 n02480495
n01698640 n01784675 n04376876 n03444034 n01917289 n01950731 n03042490 n07711569 n04532670 n03763968
n07768694 n02999410 n03617480 n06596364 n01768244 n02410509 n03976657 n01742172 n03980874 n02808440
n02226429 n02231487 n02085620 n01644900 n02129165 n02699494 n03837869 n02815834 n07720875 n02788148
n02909870 n03706229 n07871810 n03447447 n02113799 n12267677 n03662601 n02841315 n07715103 n02504458
""".split())


def _load_tinyimagenet(root: Path | None, download: bool) -> tuple[Split, Split]:
    if root is None:
        raise DataError("tinyimagenet needs --data-root DIR holding tiny-imagenet-200/")
    if download:
        raise DataError("tinyimagenet has no downloader here; unpack tiny-imagenet-200.zip "
                        "under --data-root")
    folder = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
    train_files, val_files = _tiny_files(folder)
    return load_or_decode(folder / "prunebench-decoded.pt", folder, train_files, val_files,
                          lambda files: decode_images(files, 64, resize=False))


def _tiny_files(folder: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Every (image, label) pair of the folder, after checking it is the official release."""
    wnids_file = folder / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"missing file {wnids_file} (expected the tiny-imagenet-200/ layout)")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    if sorted(wnids) != sorted(TINY_WNIDS):
        extra = sorted(set(wnids) - set(TINY_WNIDS))
        missing = sorted(set(TINY_WNIDS) - set(wnids))
        repeated = sorted({w for w in wnids if wnids.count(w) > 1})
        parts = [f"extra {', '.join(extra)}" if extra else "",
                 f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                 if missing else "", f"repeated {', '.join(repeated)}" if repeated else ""]
        raise DataError(f"{wnids_file}: lists {len(wnids)} classes; tiny-imagenet-200 has 200: "
                        + "; ".join(p for p in parts if p))
    index = {w: i for i, w in enumerate(wnids)}
    train_files: list[tuple[Path, int]] = []
    for wnid in wnids:
        image_dir = folder / "train" / wnid / "images"
        if not image_dir.is_dir():
            raise DataError(f"missing folder {image_dir}")
        found = sorted(image_dir.glob("*.JPEG"))
        if not found:
            raise DataError(f"class {wnid}: {image_dir} holds no .JPEG images")
        train_files += [(p, index[wnid]) for p in found]
    ann = folder / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"missing file {ann}")
    val_files: list[tuple[Path, int]] = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in index:
            raise DataError(f"{ann} line {n}: class {parts[1]!r} is not in wnids.txt")
        val_files.append((folder / "val" / "images" / parts[0], index[parts[1]]))
    if not val_files:
        raise DataError(f"{ann} lists no images")
    return train_files, val_files


register_dataset(DatasetSpec("tinyimagenet", 200, 3, 64, _load_tinyimagenet,
                             default_temperature=5.0))


# ---------------------------------------------------------------------------------------------
# imagefolder:PATH[?size=N]: train/<class>/* and test/<class>/* (or val/<class>/*)

def parse_imagefolder(name: str) -> tuple[Path, int | None]:
    body = name[len("imagefolder:"):]
    path, _, query = body.partition("?")
    size = None
    if query:
        params = parse_qs(query)
        unknown = sorted(set(params) - {"size"})
        if unknown:
            raise DataError(f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: size")
        try:
            size = int(params["size"][-1])
            if size < 4:
                raise ValueError
        except ValueError:
            raise DataError(f"{name}: size={params['size'][-1]!r} is invalid; expected an "
                            "integer >= 4 (pixels)") from None
    return Path(path).expanduser(), size


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} holds no class folders (expected {split_dir}/<class>/<image>)")
    out = {}
    for c in classes:
        files = sorted(p for p in (split_dir / c).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class {c!r}: {split_dir / c} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        out[c] = files
    return out


def _folder_layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]], str]:
    if not (root / "train").is_dir():
        raise DataError(f"imagefolder:{root}: missing folder {root / 'train'} "
                        "(expected train/<class>/* and test/<class>/* or val/<class>/*)")
    test_name = next((n for n in ("test", "val") if (root / n).is_dir()), None)
    if test_name is None:
        raise DataError(f"imagefolder:{root}: missing folder {root / 'test'} (or {root / 'val'})")
    train, test = _class_files(root / "train"), _class_files(root / test_name)
    if set(test) - set(train):
        raise DataError(f"imagefolder:{root}: {test_name}/ has classes that train/ lacks: "
                        f"{', '.join(sorted(set(test) - set(train)))}")
    return train, test, test_name


@lru_cache(maxsize=16)
def imagefolder_spec(name: str) -> DatasetSpec:
    root, size = parse_imagefolder(name)
    if not root.is_dir():
        raise DataError(f"{name}: folder {root} does not exist")
    train, _, _ = _folder_layout(root)
    image_size = size or image_size_of(next(iter(train.values()))[0])

    def load(data_root: Path | None, download: bool) -> tuple[Split, Split]:
        train_map, test_map, test_name = _folder_layout(root)
        index = {c: i for i, c in enumerate(train_map)}
        train_files = [(p, index[c]) for c, files in train_map.items() for p in files]
        test_files = [(p, index[c]) for c, files in test_map.items() for p in files]
        cache = root / f"prunebench-decoded-{image_size}{'r' if size else ''}.pt"
        return load_or_decode(cache, root, train_files, test_files,
                              lambda files: decode_images(files, image_size, resize=bool(size)))

    return DatasetSpec(name, num_classes=len(train), channels=3, image_size=image_size,
                       load=load, crop_padding=max(1, image_size // 8))


def canonical_imagefolder(name: str) -> str:
    """One spelling per folder (absolute path): cell ids and cache keys do not depend on the
    directory a command was started from."""
    root, size = parse_imagefolder(name)
    return f"imagefolder:{root.resolve()}" + (f"?size={size}" if size else "")


DATASETS.register_prefix("imagefolder:", imagefolder_spec, canonical_imagefolder)
