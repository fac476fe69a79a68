"""The COCO-format loader (on a hand-written folder) and the generator (valid COCO, seeded, cached)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from growprune.tasks.detection.coco import CocoFormatError, load_coco_detection
from growprune.tasks.detection.shapes import CATEGORIES, generate_shapes, generated_root
from growprune.tasks.detection.task import DetectionLoader, flip_targets
from tests.tasks.detection.tiny_coco import write_tiny_coco


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_coco(tmp_path / "tiny")


def test_loader_reads_a_hand_written_folder(tiny: Path) -> None:
    data = load_coco_detection(tiny, image_size=32)
    assert data.category_ids == [11, 42] and data.category_names == ["cat", "dog"]
    assert data.train.images.shape == (3, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.train.image_ids == [101, 102, 103] and data.train.sizes[1] == (100, 50)
    # image 101 (80 x 60): cat [20, 10, 30, 20] -> x 20/80..50/80, y 10/60..30/60; the crowd box is left out
    first = data.train.targets[0]
    assert first.shape == (2, 5)
    assert first[0].tolist() == pytest.approx([0, 0.25, 1 / 6, 0.625, 0.5])
    assert first[1].tolist() == pytest.approx([1, 0.5, 0.5, 0.75, 0.75])
    # the ground truth for COCOeval keeps the crowd box (COCOeval ignores detections on it)
    assert sum(a["iscrowd"] for a in data.train.coco["annotations"]) == 1
    assert len(data.val) == 2 and data.val.sizes == [(90, 70), (70, 90)]


def test_other_names_are_settable_and_limits_apply(tmp_path: Path) -> None:
    root = write_tiny_coco(tmp_path / "t", train_file="my_train.json", train_dir="pictures")
    data = load_coco_detection(
        root,
        train_annotations="annotations/my_train.json",
        train_images="pictures",
        image_size=40,
        train_limit=2,
    )
    assert len(data.train) == 2 and data.train.images.shape[-1] == 40
    assert [i["id"] for i in data.train.coco["images"]] == [101, 102]


@pytest.mark.parametrize(
    ("damage", "named", "expected"),
    [
        (
            lambda r: (r / "annotations" / "instances_val2017.json").unlink(),
            "instances_val2017.json",
            "no such file",
        ),
        (
            lambda r: (r / "annotations" / "instances_train2017.json").write_text("{oops"),
            "instances_train2017.json",
            "not readable as JSON",
        ),
        (
            lambda r: (r / "annotations" / "instances_train2017.json").write_text('{"images": []}'),
            "instances_train2017.json",
            "no 'annotations' list",
        ),
        (lambda r: (r / "train2017" / "a.png").unlink(), "a.png", "no such image"),
        (lambda r: (r / "train2017" / "b.jpg").write_bytes(b"not an image"), "b.jpg", "expected JPEG or PNG"),
        (lambda r: (r / "val2017").rename(r / "elsewhere"), "val2017", "no such folder"),
    ],
)
def test_a_missing_or_malformed_file_is_named_in_one_line(
    tiny: Path, damage, named: str, expected: str
) -> None:
    damage(tiny)
    with pytest.raises(CocoFormatError) as err:
        load_coco_detection(tiny, image_size=32)
    message = str(err.value)
    assert "\n" not in message and named in message and expected in message


def test_a_bad_annotation_field_is_named(tiny: Path) -> None:
    path = tiny / "annotations" / "instances_train2017.json"
    document = json.loads(path.read_text())
    del document["annotations"][0]["bbox"]
    path.write_text(json.dumps(document))
    with pytest.raises(CocoFormatError, match="instances_train2017.json: an entry lacks .*bbox"):
        load_coco_detection(tiny)
    document["annotations"][0]["bbox"] = [1, 2, 3, 4]
    document["annotations"][0]["category_id"] = 5
    path.write_text(json.dumps(document))
    with pytest.raises(CocoFormatError, match="category_id 5, not in categories"):
        load_coco_detection(tiny)


def test_generator_writes_valid_seeded_coco(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    a = generate_shapes(tmp_path / "a", n_train=12, n_val=4, seed=3)
    b = generate_shapes(tmp_path / "b", n_train=12, n_val=4, seed=3)
    for split in ("train2017", "val2017"):
        text = (a / "annotations" / f"instances_{split}.json").read_text()
        assert text == (b / "annotations" / f"instances_{split}.json").read_text()
        assert (a / split / "000000000001.png").is_file() or split == "val2017"
        coco = COCO(str(a / "annotations" / f"instances_{split}.json"))
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(CATEGORIES)
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and len({a["id"] for a in anns}) == len(anns)
        for ann in anns:
            image = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and 0 < ann["area"] <= w * h and ann["iscrowd"] == 0
            assert x >= 0 and x + w <= image["width"] and y >= 0 and y + h <= image["height"]
        per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
        assert max(per_image) >= 2  # several objects per image
    c = generate_shapes(tmp_path / "c", n_train=12, n_val=4, seed=4)
    assert (c / "annotations" / "instances_val2017.json").read_text() != text
    data = load_coco_detection(a, image_size=64)  # through the same loader
    assert len(data.train) == 12 and data.num_classes == 5


def test_generated_root_is_written_once(tmp_path: Path) -> None:
    first = generated_root(n_train=3, n_val=2, cache_dir=tmp_path)
    marker = first / "annotations" / "instances_train2017.json"
    stamp = marker.stat().st_mtime_ns
    assert generated_root(n_train=3, n_val=2, cache_dir=tmp_path) == first
    assert marker.stat().st_mtime_ns == stamp
    assert generated_root(n_train=4, n_val=2, cache_dir=tmp_path) != first
    assert not list((tmp_path / "detection").glob(".shapes-*"))  # no temporary folder left


def test_flip_moves_boxes_and_keeps_padding() -> None:
    targets = torch.tensor([[[1.0, 0.1, 0.2, 0.4, 0.6], [-1, -1, -1, -1, -1]]])
    expected = torch.tensor([[[1.0, 0.6, 0.2, 0.9, 0.6], [-1, -1, -1, -1, -1]]])
    assert torch.allclose(flip_targets(targets), expected)


def test_detection_loader_is_deterministic_and_flips_images_with_boxes(tiny: Path) -> None:
    split = load_coco_detection(tiny, image_size=32).train
    loader = DetectionLoader(split, 3, hflip=True, shuffle=True, seed=5)
    batches = [loader.batch(e, 0) for e in range(6)]
    again = DetectionLoader(split, 3, hflip=True, shuffle=True, seed=5).batch(2, 0)
    assert torch.equal(batches[2][0], again[0]) and torch.equal(batches[2][1], again[1])
    plain = DetectionLoader(split, 3, shuffle=False).batch(0, 0)
    assert plain[0].dtype == torch.float32 and abs(float(plain[0].mean())) < 2
    # over six epochs some image is flipped: its boxes are mirrored and so are its pixels
    flipped = 0
    for images, targets in batches:
        for image, target in zip(images, targets):
            row = next(
                i
                for i, t in enumerate(split.targets)
                if torch.equal(t, target) or torch.equal(flip_targets(t), target)
            )
            if not torch.equal(split.targets[row], target):
                flipped += 1
                assert torch.allclose(image, plain[0][row].flip(-1))
    assert flipped > 0


def test_root_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from growprune.tasks.detection.coco import ROOT_ENV_VAR, find_root

    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)
    assert find_root(None) is None  # the caller then uses the generated set
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "env"))
    assert find_root(None) == tmp_path / "env"
    assert find_root(tmp_path / "arg") == tmp_path / "arg"
