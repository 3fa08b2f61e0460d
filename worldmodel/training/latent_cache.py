"""On-disk cache of frozen-encoder latents, so that training never runs the encoder.

Layout of a cache folder:

    cache.json               what produced the latents (encoder, image size, tokens per frame, dtype, camera, fps)
    latents/<key>/           one zarr array per episode, [frames, N, D] float16/bfloat16, one chunk per frame
    episodes/<key>.json      the episode's manifest: id, source, frame indices, states, extrinsics, per-frame CRC32
    index.json               optional consolidated list of manifests, rewritten at the end of `vjepa-ac encode`

An episode counts as cached only once its manifest exists; the manifest is written (atomically) after every latent
chunk, so an interrupted encode leaves no half episode behind and simply resumes. Processes write disjoint
episodes, each into its own array and manifest, so several ranks can fill one cache at the same time. Every frame
read is checked against its CRC32, so a damaged or missing chunk raises `CorruptCacheError` instead of feeding zeros
or garbage to training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tensorstore as ts
import torch
from torch import Tensor

CACHE_FORMAT = "vjepa-ac-latent-cache"
CACHE_VERSION = 1
STORAGE_DTYPES = ("float16", "bfloat16")
_SPEC_FILE = "cache.json"
_INDEX_FILE = "index.json"
_LATENTS_DIR = "latents"
_MANIFESTS_DIR = "episodes"


class CorruptCacheError(RuntimeError):
    """A cached latent chunk or manifest does not match what was written; the message names episode and frame."""


class DuplicateEpisodeError(ValueError):
    """Two different episodes (different recorded content) carry the same episode id; the message names both."""


@dataclass(frozen=True)
class CacheSpec:
    """What the latents in a cache are: every writer of one cache must agree on all of it."""

    tokens_per_frame: int
    embed_dim: int
    dtype: str = "float16"
    camera: str = "left"
    fps: float | None = 4.0
    """Cached frames per second of video (frame stride ceil(video_fps / fps), as the reference clip rule);
    None caches every frame."""
    crop: str = "droid"
    num_levels: int = 1
    """Feature levels concatenated along channels (4 for V-JEPA 2.1 hierarchical features), each layer-normed alone."""
    encoder: dict[str, Any] = field(default_factory=dict)
    """How to rebuild the frozen encoder: preset, checkpoint, checkpoint_key, img_size, patch_size, tubelet_size."""

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"cache dtype must be one of {STORAGE_DTYPES}, got {self.dtype!r}")
        if self.tokens_per_frame < 1 or self.embed_dim < 1:
            raise ValueError("tokens_per_frame and embed_dim must be positive")


@dataclass
class CachedEpisode:
    """Manifest of one cached episode."""

    key: str
    episode_id: str
    source: str
    frame_indices: list[int]
    """Video frame index of each cached latent frame."""
    states: np.ndarray
    """[F, 7] float64 robot state at each cached frame."""
    extrinsics: np.ndarray
    """[F, 6] float64 camera pose at each cached frame (zeros when the episode has none)."""
    checksums: list[int]
    video_fps: float
    success: bool | None = None
    task: str = ""
    content: str = ""
    """Fingerprint of the episode's recorded states (`content_fingerprint`); tells apart two episodes that share an
    id. Empty in caches written before it existed."""

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["states"] = self.states.tolist()
        values["extrinsics"] = self.extrinsics.tolist()
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "CachedEpisode":
        values = dict(values)
        values["states"] = np.asarray(values["states"], dtype=np.float64).reshape(-1, 7)
        values["extrinsics"] = np.asarray(values["extrinsics"], dtype=np.float64).reshape(-1, 6)
        return cls(**values)


def content_fingerprint(states: np.ndarray) -> str:
    """A short hash of an episode's recorded [T, 7] states: equal for the same recording wherever it lies, different
    for two recordings that only share metadata (a copied uuid)."""
    values = np.ascontiguousarray(np.asarray(states, dtype=np.float64))
    return hashlib.sha1(repr(values.shape).encode() + values.tobytes()).hexdigest()[:16]


def episode_key(episode_id: str, content: str = "") -> str:
    """File-system-safe name of an episode: readable id plus a hash of the id and its content fingerprint, so two
    episodes sharing an id never share a key."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", episode_id)[:80]
    identity = episode_id if not content else f"{episode_id}\0{content}"
    return f"{safe}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"


def check_unique_ids(episodes: Iterable[CachedEpisode], where: str) -> None:
    """DuplicateEpisodeError naming both sources if two cached episodes share an id (training splits and selects
    episodes by id, so it must be unique)."""
    seen: dict[str, CachedEpisode] = {}
    for episode in episodes:
        first = seen.setdefault(episode.episode_id, episode)
        if first is not episode:
            raise DuplicateEpisodeError(
                f"{where}: episode id {episode.episode_id!r} is cached twice, from {first.source} and from "
                f"{episode.source} (different recordings with the same id, e.g. copied metadata); give one of them "
                f"its own id, delete episodes/{episode.key}.json, and encode again"
            )


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _frame_crc(frame: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frame).tobytes())


def _to_storage(latents: Tensor, dtype: str) -> np.ndarray:
    latents = latents.detach().cpu()
    if dtype == "float16":
        return latents.to(torch.float16).numpy()
    # NumPy has no bfloat16; tensorstore uses ml_dtypes' bfloat16, which shares torch's bit layout.
    import ml_dtypes

    return latents.to(torch.bfloat16).view(torch.int16).numpy().view(ml_dtypes.bfloat16)


def _from_storage(array: np.ndarray) -> Tensor:
    if array.dtype == np.float16:
        return torch.from_numpy(array).float()
    return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16).float()


class LatentCache:
    """A latent cache folder. Create with `LatentCache.create`, open an existing one with `LatentCache.open`."""

    def __init__(self, root: str | Path, spec: CacheSpec):
        self.root = Path(root)
        self.spec = spec
        self._arrays: dict[str, ts.TensorStore] = {}

    # Tensorstore handles do not survive pickling into DataLoader workers; each process reopens its own.
    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "spec": self.spec, "_arrays": {}}

    @classmethod
    def create(cls, root: str | Path, spec: CacheSpec) -> "LatentCache":
        """Create a cache, or open an existing one after checking it was made with the same settings."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        spec_path = root / _SPEC_FILE
        payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "spec": dataclasses.asdict(spec)}
        if not spec_path.exists():
            # Link a complete temp file into place: exactly one of several racing writers wins, none sees half a file.
            fd, tmp = tempfile.mkstemp(dir=root, prefix=".cache.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1)
            try:
                os.link(tmp, spec_path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        existing = cls.open(root)
        if existing.spec != spec:
            mine, theirs = dataclasses.asdict(spec), dataclasses.asdict(existing.spec)
            diff = {k: (theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]}
            raise ValueError(f"latent cache {root} was written with other settings (existing, requested): {diff}")
        return existing

    @classmethod
    def open(cls, root: str | Path) -> "LatentCache":
        root = Path(root)
        spec_path = root / _SPEC_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{root} is not a latent cache (no {_SPEC_FILE}); create it with `vjepa-ac encode`")
        try:
            payload = json.loads(spec_path.read_text())
        except json.JSONDecodeError as exc:
            raise CorruptCacheError(f"latent cache {root}: {_SPEC_FILE} is not valid JSON ({exc})") from exc
        if payload.get("format") != CACHE_FORMAT or payload.get("version") != CACHE_VERSION:
            raise ValueError(
                f"latent cache {root}: unsupported format {payload.get('format')!r} version {payload.get('version')!r}"
            )
        return cls(root, CacheSpec(**payload["spec"]))

    # ------------------------------------------------------------------ writing

    def _array_spec(self, key: str) -> dict[str, Any]:
        return {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(self.root / _LATENTS_DIR / key)},
        }

    def _manifest_path(self, key: str) -> Path:
        return self.root / _MANIFESTS_DIR / f"{key}.json"

    def has_episode(self, episode_id: str, content: str = "") -> bool:
        return self._manifest_path(episode_key(episode_id, content)).is_file()

    def write_episode(
        self,
        episode_id: str,
        latent_chunks: Iterable[Tensor],
        *,
        frame_indices: Sequence[int],
        states: np.ndarray,
        extrinsics: np.ndarray | None = None,
        source: str = "",
        video_fps: float = 0.0,
        success: bool | None = None,
        task: str = "",
        content: str = "",
    ) -> CachedEpisode:
        """Write one episode's latents, given as consecutive [k, N, D] chunks, then publish its manifest.

        States (and extrinsics) must be finite; a NaN is reported with the episode id instead of being cached.
        `content` (see `content_fingerprint`) goes into the key, so two recordings sharing an id get two keys.
        """
        num_frames = len(frame_indices)
        states = np.asarray(states, dtype=np.float64)
        extrinsics = np.zeros((num_frames, 6)) if extrinsics is None else np.asarray(extrinsics, dtype=np.float64)
        if states.shape != (num_frames, 7) or extrinsics.shape != (num_frames, 6):
            raise ValueError(
                f"episode {episode_id}: states {states.shape} / extrinsics {extrinsics.shape} do not match "
                f"{num_frames} cached frames"
            )
        for name, values in (("states", states), ("extrinsics", extrinsics)):
            if not np.isfinite(values).all():
                bad = int(np.argwhere(~np.isfinite(values))[0, 0])
                raise ValueError(f"episode {episode_id}: {name} are not finite at frame {frame_indices[bad]}")
        key = episode_key(episode_id, content)
        tokens, dim = self.spec.tokens_per_frame, self.spec.embed_dim
        spec = self._array_spec(key)
        spec["metadata"] = {
            "shape": [num_frames, tokens, dim],
            "chunks": [1, tokens, dim],
            "dtype": "<f2" if self.spec.dtype == "float16" else "bfloat16",
            "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 2},
        }
        array = ts.open(spec, create=True, delete_existing=True).result()
        checksums: list[int] = []
        start = 0
        for chunk in latent_chunks:
            if chunk.ndim != 3 or tuple(chunk.shape[1:]) != (tokens, dim):
                raise ValueError(
                    f"episode {episode_id}: latent chunk of shape {tuple(chunk.shape)} does not match the cache's "
                    f"[k, {tokens}, {dim}]"
                )
            if not torch.isfinite(chunk).all():
                raise ValueError(f"episode {episode_id}: the encoder produced non-finite latents near frame {start}")
            stored = _to_storage(chunk, self.spec.dtype)
            if start + len(stored) > num_frames:
                raise ValueError(f"episode {episode_id}: more latent frames than the {num_frames} frame indices")
            array[start : start + len(stored)].write(stored).result()
            checksums.extend(_frame_crc(frame) for frame in stored)
            start += len(stored)
        if start != num_frames:
            raise ValueError(f"episode {episode_id}: got {start} latent frames for {num_frames} frame indices")
        episode = CachedEpisode(
            key=key,
            episode_id=episode_id,
            source=source,
            frame_indices=[int(i) for i in frame_indices],
            states=states,
            extrinsics=extrinsics,
            checksums=checksums,
            video_fps=float(video_fps),
            success=success,
            task=task,
            content=content,
        )
        _atomic_write_text(self._manifest_path(key), json.dumps(episode.to_json()))
        self._arrays.pop(key, None)
        return episode

    def remove_episode(self, key: str) -> None:
        """Drop an episode (manifest first, so it is never seen half-deleted)."""
        self._manifest_path(key).unlink(missing_ok=True)
        shutil.rmtree(self.root / _LATENTS_DIR / key, ignore_errors=True)
        self._arrays.pop(key, None)

    def write_index(self) -> int:
        """Consolidate every manifest into index.json (faster start-up for large caches); returns the count.
        DuplicateEpisodeError if two episodes share an id."""
        episodes = self._scan_manifests()
        check_unique_ids(episodes, f"latent cache {self.root}")
        _atomic_write_text(self.root / _INDEX_FILE, json.dumps([e.to_json() for e in episodes]))
        return len(episodes)

    # ------------------------------------------------------------------ reading

    def _manifest_names(self) -> list[str]:
        folder = self.root / _MANIFESTS_DIR
        if not folder.is_dir():
            return []
        return sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith("."))

    def _load_manifest(self, name: str) -> CachedEpisode:
        path = self.root / _MANIFESTS_DIR / name
        try:
            return CachedEpisode.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptCacheError(
                f"latent cache {self.root}: manifest {path.name} is damaged ({exc}); run `vjepa-ac encode --repair` "
                "to re-encode its episode"
            ) from exc

    def _scan_manifests(self) -> list[CachedEpisode]:
        return [self._load_manifest(name) for name in self._manifest_names()]

    def episodes(self) -> list[CachedEpisode]:
        """Every fully written episode, sorted by key; DuplicateEpisodeError if two share an id."""
        episodes = self._listed_episodes()
        check_unique_ids(episodes, f"latent cache {self.root}")
        return episodes

    def _listed_episodes(self) -> list[CachedEpisode]:
        index = self.root / _INDEX_FILE
        if index.is_file():
            try:
                listed = [CachedEpisode.from_json(v) for v in json.loads(index.read_text())]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                listed = None
            # The index is only trusted while it names exactly the manifests on disk (later encodes add more).
            if listed is not None and sorted(f"{e.key}.json" for e in listed) == self._manifest_names():
                return listed
        return self._scan_manifests()

    def _array(self, key: str) -> ts.TensorStore:
        array = self._arrays.get(key)
        if array is None:
            try:
                array = ts.open(self._array_spec(key), open=True).result()
            except ValueError as exc:
                raise CorruptCacheError(f"latent cache {self.root}: latents of {key} cannot be opened ({exc})") from exc
            self._arrays[key] = array
        return array

    def read(self, episode: CachedEpisode, positions: Sequence[int], *, verify: bool = True) -> Tensor:
        """Latents [k, N, D] float32 at positions (indices into the episode's cached frames), checksum-verified."""
        positions = [int(p) for p in positions]
        if any(not 0 <= p < episode.num_frames for p in positions):
            raise IndexError(f"episode {episode.episode_id}: positions {positions} outside [0, {episode.num_frames})")
        array = self._array(episode.key)
        expected = (episode.num_frames, self.spec.tokens_per_frame, self.spec.embed_dim)
        if tuple(array.shape) != expected:
            raise CorruptCacheError(
                f"latent cache {self.root}: episode {episode.episode_id} latents have shape {tuple(array.shape)}, "
                f"manifest says {expected}"
            )
        try:
            data = array[positions].read().result()
        except ValueError as exc:
            raise CorruptCacheError(
                f"latent cache {self.root}: episode {episode.episode_id} latents cannot be decoded ({exc}); run "
                f"`vjepa-ac encode --repair`"
            ) from exc
        if verify:
            for frame, position in zip(data, positions, strict=True):
                if _frame_crc(frame) != episode.checksums[position]:
                    raise CorruptCacheError(
                        f"latent cache {self.root}: episode {episode.episode_id} frame {position} (video frame "
                        f"{episode.frame_indices[position]}, chunk {_LATENTS_DIR}/{episode.key}/{position}.0.0) "
                        f"fails its checksum; run `vjepa-ac encode --repair` to re-encode the episode"
                    )
        return _from_storage(data)

    def verify(self, *, chunk_frames: int = 32) -> dict[str, str]:
        """Check every manifest and every frame checksum; returns {episode key: problem} for the damaged ones."""
        problems: dict[str, str] = {}
        for name in self._manifest_names():
            key = name.removesuffix(".json")
            try:
                episode = self._load_manifest(name)
                for start in range(0, episode.num_frames, chunk_frames):
                    self.read(episode, range(start, min(start + chunk_frames, episode.num_frames)))
            except CorruptCacheError as exc:
                problems[key] = str(exc)
        return problems
