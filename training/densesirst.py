"""DenseSIRST (GrokCV SIRSTdevkit layout) as the BAFE-Net reference loads it: VOC boxes, palette sky masks, splits.

Layout under ``root``: ``PNGImages/<id>.png``, ``SIRST/BBox/<id>.xml``, ``SIRST/BinaryMask/<id>_pixels0.png``
(target pixels, 0/255), ``SkySeg/PaletteMask/<id>.png`` (palette index 0 = other, 1 = sky), ``Splits/<split>.txt``.

Bad input, decided as follows:
- missing root, missing or empty split file, a split whose every id lacks files: ``UserError`` (nothing to train on);
- an id whose image, XML or (with masks) sky/target mask is missing: skipped, reported once as one warning with the
  count and the first few ids (users bring partial copies of the data; the reference would crash);
- a file that exists but is corrupt (PNG that does not decode, XML that does not parse or has non-numeric or inverted
  coordinates, a box outside the image, a mask of another size or with values that are not class ids): ``UserError``
  naming the file and the fix. Dropping such a file silently would change the benchmark without anyone noticing.
  XML problems surface when the dataset is built; image and mask problems when that item is loaded;
- an image without sky is valid data (17 of the 1,024 have none): it loads normally and BAG-CP leaves it unchanged.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import UserError

log = logging.getLogger(__name__)

TARGET_CLASS = "Target"  # the only VOC class the reference reads; other object names are ignored
SKY, NON_SKY, IGNORE = 1, 0, 255  # sky-mask values: palette indices, plus the reference's ignore/pad value
MAX_IDS_IN_WARNING = 5


@dataclass(slots=True)
class Sample:
    """One image with its annotations, in the coordinates of ``image`` (original until a transform resizes it).

    image: uint8 [H, W] grey ([H, W, F] for a clip's F frames, oldest first, and MOT boxes: training/splits.py).
    boxes: float32 [N, 4] x1, y1, x2, y2 with the reference's minus-one convention (XML value - 1 on all four),
    so a box covering pixels xmin..xmax (1-based) has x2 - x1 = xmax - xmin.
    difficult: bool [N]. sky_mask: uint8 [H, W], 1 = sky, 0 = other, 255 = ignore (padding); target_mask: uint8
    [H, W], 1 = target pixel; both None when the dataset was built without masks. original_hw: (height, width) of
    the file. scale_factor: (sx, sy) from original to current pixels; divide predicted boxes by it to evaluate in
    original coordinates as the reference does. flipped: whether a horizontal flip was applied.
    """

    image: np.ndarray
    boxes: np.ndarray
    difficult: np.ndarray
    sky_mask: np.ndarray | None
    target_mask: np.ndarray | None
    image_id: str
    original_hw: tuple[int, int]
    scale_factor: tuple[float, float] = (1.0, 1.0)
    flipped: bool = False


@dataclass(frozen=True, slots=True)
class Annotation:
    """Parsed XML of one id: boxes float32 [N, 4] (minus-one convention), difficult bool [N], size (H, W) or None.
    Also a clip key frame's gt (training/splits.py), with MOT boxes x, y, x + w, y + h and size None."""

    image_id: str
    boxes: np.ndarray
    difficult: np.ndarray
    xml_hw: tuple[int, int] | None


class DenseSirst:
    """Map-style dataset over one split; ``dataset[i]`` loads a ``Sample`` at original resolution.

    XMLs are parsed when the dataset is built (fast, and lets evaluation read ground truth without decoding images);
    images and masks are decoded per item. ``with_masks=False`` skips the sky and target masks (evaluation).
    """

    def __init__(self, root: str | Path, split: str, *, with_masks: bool = True):
        self.root = Path(root)
        self.split = split
        self.with_masks = with_masks
        if not self.root.is_dir():
            raise UserError(f"DenseSIRST root {self.root} does not exist: pass the SIRSTdevkit folder that holds "
                            "PNGImages/, SIRST/, SkySeg/ and Splits/")
        ids = read_split(self.root, split)
        present, missing = [], []
        for image_id in ids:
            absent = [path for path in self._required_files(image_id) if not path.is_file()]
            (missing if absent else present).append((image_id, absent))
        if missing:
            examples = "; ".join(f"{image_id} ({', '.join(str(p.relative_to(self.root)) for p in absent)})"
                                 for image_id, absent in missing[:MAX_IDS_IN_WARNING])
            log.warning("DenseSIRST split %r: skipped %d of %d ids whose files are missing, e.g. %s",
                        split, len(missing), len(ids), examples)
        if not present:
            raise UserError(f"DenseSIRST split {split!r} under {self.root}: none of its {len(ids)} ids has all of its "
                            "files; check that the folder is a complete SIRSTdevkit copy")
        self.skipped_ids = [image_id for image_id, _ in missing]
        self.annotations = [parse_voc_xml(self._xml_path(image_id), image_id) for image_id, _ in present]

    @property
    def ids(self) -> list[str]:
        return [annotation.image_id for annotation in self.annotations]

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> Sample:
        annotation = self.annotations[index]
        image_id = annotation.image_id
        image_path = self.root / "PNGImages" / f"{image_id}.png"
        image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise UserError(f"cannot decode {image_path}: the PNG is corrupt; copy it again from the dataset or "
                            f"remove {image_id!r} from Splits/{self.split}.txt")
        height, width = image.shape
        xml_path = self._xml_path(image_id)
        if annotation.xml_hw is not None and annotation.xml_hw != (height, width):
            raise UserError(f"{xml_path} says the image is {annotation.xml_hw[1]}x{annotation.xml_hw[0]} but "
                            f"{image_path} is {width}x{height}: fix <size> or the image")
        _check_boxes_inside(annotation.boxes, width, height, xml_path)
        sky_mask = target_mask = None
        if self.with_masks:
            sky_mask = read_sky_mask(self.root / "SkySeg" / "PaletteMask" / f"{image_id}.png", (height, width))
            target_mask = read_target_mask(self.root / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png",
                                           (height, width))
        return Sample(image=image, boxes=annotation.boxes.copy(), difficult=annotation.difficult.copy(),
                      sky_mask=sky_mask, target_mask=target_mask, image_id=image_id, original_hw=(height, width))

    def _xml_path(self, image_id: str) -> Path:
        return self.root / "SIRST" / "BBox" / f"{image_id}.xml"

    def _required_files(self, image_id: str) -> list[Path]:
        files = [self.root / "PNGImages" / f"{image_id}.png", self._xml_path(image_id)]
        if self.with_masks:
            files += [self.root / "SkySeg" / "PaletteMask" / f"{image_id}.png",
                      self.root / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png"]
        return files


def read_split(root: Path, split: str) -> list[str]:
    """Ids of ``root/Splits/<split>.txt``, one per line (blank lines ignored; the last line has no newline)."""
    path = root / "Splits" / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "Splits").glob("*.txt"))
        raise UserError(f"split file {path} not found; available splits: {', '.join(available) or 'none'}")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise UserError(f"split file {path} is empty: list one image id per line")
    return ids


def parse_voc_xml(path: Path, image_id: str) -> Annotation:
    """Boxes of the ``Target`` objects as the reference parses them: ``int(float(text)) - 1`` on all four values."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise UserError(f"cannot parse {path}: {error}; copy the file again or remove {image_id!r} from the split")
    boxes, difficult = [], []
    for index, obj in enumerate(root.findall("object")):
        if (obj.findtext("name") or "").strip() != TARGET_CLASS:
            continue
        box = obj.find("bndbox")
        if box is None:
            continue  # a pixel-only object, as in SIRST/BinaryMask/*.xml: no box to learn from
        try:
            xmin, ymin, xmax, ymax = (int(float(box.findtext(key))) - 1 for key in ("xmin", "ymin", "xmax", "ymax"))
            flag = int(obj.findtext("difficult") or 0)
        except (TypeError, ValueError):
            raise UserError(f"{path}: object {index} has a missing or non-numeric <bndbox>/<difficult> value; "
                            "fix the XML") from None
        if xmax < xmin or ymax < ymin:
            raise UserError(f"{path}: object {index} has xmax < xmin or ymax < ymin "
                            f"({xmin + 1}, {ymin + 1}, {xmax + 1}, {ymax + 1}); fix the box")
        boxes.append((xmin, ymin, xmax, ymax))
        difficult.append(bool(flag))
    size = root.find("size")
    xml_hw = None
    if size is not None:
        try:
            xml_hw = (int(size.findtext("height")), int(size.findtext("width")))
        except (TypeError, ValueError):
            raise UserError(f"{path}: <size> needs integer <width> and <height>; fix or delete it") from None
    return Annotation(image_id, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(difficult, bool), xml_hw)


def _check_boxes_inside(boxes: np.ndarray, width: int, height: int, xml_path: Path) -> None:
    """XML indices are 1-based (1..W); after the minus-one a box must lie in -1..W-1 (xmin = 0 is tolerated)."""
    outside = (boxes[:, 0] < -1) | (boxes[:, 1] < -1) | (boxes[:, 2] > width - 1) | (boxes[:, 3] > height - 1)
    if outside.any():
        x1, y1, x2, y2 = (boxes[np.argmax(outside)] + 1).astype(int)
        raise UserError(f"{xml_path}: {int(outside.sum())} box(es) lie outside the {width}x{height} image, e.g. "
                        f"xmin={x1} ymin={y1} xmax={x2} ymax={y2}; fix or delete those objects")


def read_sky_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Palette indices of a 'P' (or grey 'L') PNG as uint8 class ids: 1 sky, 0 other, 255 ignore."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserError(f"{path} is a {image.mode} image; a sky mask must be a palette (P) or grey (L) PNG "
                                "whose values are class ids 0 = other, 1 = sky")
            mask = np.array(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"cannot decode sky mask {path}: {error}; copy it again from the dataset") from None
    _check_mask_shape(mask, shape, path)
    unexpected = np.setdiff1d(np.unique(mask), (NON_SKY, SKY, IGNORE))
    if unexpected.size:
        raise UserError(f"sky mask {path} contains values {unexpected.tolist()}; only 0 = other, 1 = sky and "
                        "255 = ignore are class ids (an RGB-coloured mask must be saved as a palette PNG)")
    return mask


def read_target_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Target pixels (any non-zero value) as uint8 0/1; BAG-CP keeps pasted targets 1 px away from them."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise UserError(f"cannot decode target mask {path}: the PNG is corrupt; copy it again from the dataset")
    _check_mask_shape(mask, shape, path)
    return (mask > 0).astype(np.uint8)


def _check_mask_shape(mask: np.ndarray, shape: tuple[int, int], path: Path) -> None:
    if mask.shape != shape:
        raise UserError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}; "
                        "a mask must have the size of its image")
