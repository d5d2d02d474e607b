"""The TensorRT plan cache: built plans on disk, keyed by what makes a plan valid, with a JSON sidecar each.

A plan runs only on the TensorRT version and GPU it was built for, at its precision, for shapes inside its
optimisation profile. The key holds all of these plus the hash of the ONNX it was built from, and the file name
holds a digest of the key, so a changed ONNX, another GPU or another TensorRT version is a cache miss. ``lookup``
also reports cached plans of the same model, precision and profile that were built for another GPU or TensorRT
version (say, a cache folder shared between machines, or a driver upgrade), so the caller can say why it rebuilds.

Files: ``<model>-<precision>-<digest>.plan`` and ``.json`` beside it (the key, the engine contract's input
specification, the ONNX path, the build time). A sidecar is written after its plan, so a plan without one (an
interrupted write) is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engines.preprocess import InputSpec

SIDECAR_FORMAT = "irst-tensorrt-plan/1"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Profile:
    """The optimisation profile of the input 'images': min, opt and max shapes [N, F, H, W]."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def contains(self, shape: tuple[int, ...]) -> bool:
        return all(low <= size <= high for low, size, high in zip(self.min, shape, self.max))

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        return cls(*(tuple(int(v) for v in data[k]) for k in ("min", "opt", "max")))


@dataclass(frozen=True)
class PlanKey:
    """What a plan depends on; two builds with equal keys are interchangeable."""

    onnx_sha256: str
    tensorrt: str
    gpu: str  # name and compute capability, e.g. "NVIDIA H200 (sm_90)"
    precision: str
    profile: Profile

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PlanKey:
        return cls(str(data["onnx_sha256"]), str(data["tensorrt"]), str(data["gpu"]), str(data["precision"]),
                   Profile.from_json(data["profile"]))

    def same_model(self, other: PlanKey) -> bool:
        """Same ONNX, precision and profile (built for this machine or another)."""
        return (self.onnx_sha256, self.precision, self.profile) == (other.onnx_sha256, other.precision, other.profile)


def mismatch(recorded: PlanKey, current: PlanKey) -> str | None:
    """Why a plan built under ``recorded`` cannot run here under ``current`` (GPU or TensorRT version), or None."""
    reasons = [f"{what} {theirs!r} (this machine: {ours!r})" for what, theirs, ours in (
        ("GPU", recorded.gpu, current.gpu), ("TensorRT", recorded.tensorrt, current.tensorrt)) if theirs != ours]
    return "built for " + " and ".join(reasons) if reasons else None


@dataclass
class PlanRecord:
    """A plan on disk and what its sidecar says about it."""

    plan: Path
    key: PlanKey
    spec: InputSpec
    onnx: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sidecar(self) -> Path:
        return sidecar_of(self.plan)


def sidecar_of(plan: Path) -> Path:
    return plan.with_suffix(".json")


def read_record(plan: Path) -> PlanRecord | None:
    """The record of ``plan`` from its sidecar; None when the plan or a readable sidecar is missing."""
    sidecar = sidecar_of(plan)
    if not plan.is_file() or not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
        if data.get("format") != SIDECAR_FORMAT:
            return None
        return PlanRecord(plan, PlanKey.from_json(data["key"]), InputSpec(**data["spec"]), data.get("onnx"),
                          data.get("extra", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(plan_bytes: bytes, record: PlanRecord) -> PlanRecord:
    """Write the plan, then its sidecar, each through a temporary file (an interrupted write leaves no plan that
    looks complete)."""
    record.plan.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": SIDECAR_FORMAT, "key": record.key.to_json(), "spec": asdict(record.spec), "onnx": record.onnx,
            "extra": record.extra}
    for path, payload in ((record.plan, plan_bytes), (record.sidecar, json.dumps(data, indent=1).encode())):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(payload)
        os.replace(partial, path)
    return record


@dataclass
class Lookup:
    """A cache lookup: the usable plan (or None) and the cached plans of the same model, precision and profile
    that cannot run here, each with the reason."""

    hit: PlanRecord | None
    stale: list[tuple[PlanRecord, str]]


class PlanCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def path_for(self, key: PlanKey, model_name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name) or "model"
        return self.folder / f"{safe}-{key.precision}-{key.digest()}.plan"

    def lookup(self, key: PlanKey) -> Lookup:
        hit, stale = None, []
        for plan in sorted(self.folder.glob("*.plan")) if self.folder.is_dir() else []:
            record = read_record(plan)
            if record is None or not record.key.same_model(key):
                continue
            if record.key == key:
                hit = record
            else:
                stale.append((record, mismatch(record.key, key) or "built under another key"))
        return Lookup(hit, stale)

    @staticmethod
    def remove(record: PlanRecord) -> None:
        for path in (record.plan, record.sidecar):
            path.unlink(missing_ok=True)
