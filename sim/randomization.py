"""Domain randomisation of the tabletop scene: what varies, within which ranges, and how one sampled variation is
built into the MuJoCo scene.

`DomainRandomization` holds the ranges (defaults chosen to look like the spread of DROID's scenes: many objects of
different shapes and colours, different tables and rooms, lights, and exterior cameras re-placed on their tripods for
every scene). `DomainRandomization.sample(rng)` draws one `SceneVariation`: concrete, JSON-serialisable values that
`apply_variation` writes into the scene's `MjSpec` before it is compiled. Building the scene from a variation rather
than editing a compiled model lets everything vary (shapes, masses, procedural textures, lights, extra objects) with
the physics consistent, and the variation recorded with an episode rebuilds the same scene for replay.

Without a variation the scene is the fixed evaluation scene, unchanged: nothing here runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import mujoco
import numpy as np

SHAPES = ("box", "cylinder", "sphere", "capsule", "ellipsoid")
"""Primitive shapes objects can take."""
TEXTURE_PATTERNS = ("checker", "gradient", "flat")
"""MuJoCo's procedural 2-D textures (`flat` gets random speckles, like wood grain or a laminate)."""
EXTERIOR_ROLES = ("left", "right")
DISTRACTOR_PREFIX = "distractor_"
"""Body and geom names of distractor objects: distractor_0, distractor_1, ..."""

_GEOM_TYPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "sphere": mujoco.mjtGeom.mjGEOM_SPHERE, "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
}
_BUILTINS = {"checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER, "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
             "flat": mujoco.mjtBuiltin.mjBUILTIN_FLAT}
_OBJECT_DENSITY = 400.0
"""kg/m^3 of randomised objects (light wood or plastic): a 5 cm cube weighs 50 g, like the fixed scene's."""


Range = tuple[float, float]


@dataclass(frozen=True)
class DomainRandomization:
    """Ranges of every varied property; each episode draws uniformly within them (`sample`).

    Lengths in metres, angles in degrees, colours and intensities in [0, 1]. A range (a, a) fixes the value.
    """

    object_shapes: tuple[str, ...] = ("box", "cylinder", "sphere")
    """Shapes of the manipulated object (the body named "cube" that tasks and experts use)."""
    object_half_size: Range = (0.02, 0.03)
    """Half extent of the manipulated object (4-6 cm across: the Franka hand opens 8 cm)."""
    object_aspect: Range = (0.8, 1.25)
    """Ratio of a box's sides (and of cylinders' height to diameter) to its base half size."""
    distractors: tuple[int, int] = (1, 4)
    """Number of extra objects on the table, besides the mug (inclusive range)."""
    distractor_shapes: tuple[str, ...] = SHAPES
    distractor_half_size: Range = (0.015, 0.045)
    texture_patterns: tuple[str, ...] = TEXTURE_PATTERNS
    """Procedural patterns for the table top, the floor and the walls."""
    texture_repeat: Range = (1.0, 6.0)
    """How many times a texture tiles across its surface."""
    table_brightness: Range = (0.25, 0.85)
    """Brightness of the table's colours (their hue is free)."""
    room_brightness: Range = (0.3, 0.9)
    """Brightness of floor and wall colours."""
    light_azimuth: Range = (-180.0, 180.0)
    """Horizontal direction the key light comes from (degrees about the vertical)."""
    light_elevation: Range = (40.0, 85.0)
    """Key light's angle above the table plane (90 = straight down)."""
    light_diffuse: Range = (0.35, 0.95)
    """Key light intensity."""
    fill_diffuse: Range = (0.0, 0.4)
    ambient: Range = (0.15, 0.5)
    """Ambient light (the headlight's ambient term: lights every surface evenly)."""
    light_tint: float = 0.1
    """Largest deviation of a light's colour from white, per channel (warm or cool lamps)."""
    camera_position_jitter: tuple[float, float, float] = (0.08, 0.08, 0.06)
    """Largest offset (m) of an exterior camera from its nominal position along base-frame x, y, z. DROID's exterior
    cameras are "varied" (camera type 1): placed anew per scene, their extrinsics differ between episodes and stay
    constant within one, and the left one is the one at larger base-frame y (droid_and_franka.md §1.3-1.4). Here
    each episode moves them once; the offsets keep the left camera left and the workspace in view (at 12 cm and
    5 degrees the raised gripper leaves the frame)."""
    camera_rotation_jitter: tuple[float, float, float] = (4.0, 4.0, 3.0)
    """Largest turn (degrees) of an exterior camera about its own x (tilt), y (pan) and viewing (roll) axes, on top
    of its nominal orientation."""

    def __post_init__(self) -> None:
        for name in ("object_shapes", "distractor_shapes"):
            shapes = getattr(self, name)
            if not shapes or set(shapes) - set(SHAPES):
                raise ValueError(f"{name} must be a non-empty subset of {SHAPES}, got {shapes}")
        if not self.texture_patterns or set(self.texture_patterns) - set(TEXTURE_PATTERNS):
            raise ValueError(f"texture_patterns must be a non-empty subset of {TEXTURE_PATTERNS}")
        bounds = {
            "object_half_size": (0.01, 0.035), "object_aspect": (0.5, 2.0), "distractor_half_size": (0.005, 0.08),
            "texture_repeat": (0.1, 50.0), "table_brightness": (0.0, 1.0), "room_brightness": (0.0, 1.0),
            "light_azimuth": (-360.0, 360.0), "light_elevation": (10.0, 90.0), "light_diffuse": (0.0, 1.0),
            "fill_diffuse": (0.0, 1.0), "ambient": (0.0, 1.0),
        }
        for name, (low, high) in bounds.items():
            a, b = getattr(self, name)
            if not (low <= a <= b <= high):
                raise ValueError(f"{name} must be a range (a, b) with {low} <= a <= b <= {high}, got {(a, b)}")
        low_count, high_count = self.distractors
        if not 0 <= low_count <= high_count <= 8:
            raise ValueError(f"distractors must be a range (a, b) with 0 <= a <= b <= 8, got {self.distractors}")
        if not 0.0 <= self.light_tint <= 0.5:
            raise ValueError(f"light_tint must be in [0, 0.5], got {self.light_tint}")
        for name, largest in (("camera_position_jitter", 0.3), ("camera_rotation_jitter", 20.0)):
            values = getattr(self, name)
            if len(values) != 3 or any(not 0.0 <= v <= largest for v in values):
                raise ValueError(f"{name} must be 3 values in [0, {largest}], got {values}")

    @classmethod
    def from_dict(cls, values: dict) -> DomainRandomization:
        """Ranges from a mapping (e.g. a YAML or JSON file); keys not given keep their defaults."""
        from vjepa_ac.data.config import from_dict

        return from_dict(cls, values, "randomization")

    def sample(self, rng: np.random.Generator) -> SceneVariation:
        """One scene variation drawn from these ranges."""
        count = int(rng.integers(self.distractors[0], self.distractors[1] + 1))
        key_dir = _direction(math.radians(rng.uniform(*self.light_azimuth)),
                             math.radians(rng.uniform(*self.light_elevation)))
        return SceneVariation(
            object=_sample_object(rng, self.object_shapes, self.object_half_size, self.object_aspect,
                                  rgb=_saturated_colour(rng)),
            mug_rgb=_colour(rng, (0.3, 0.95)),
            target_rgb=_colour(rng, (0.2, 0.8)),
            distractors=tuple(
                _sample_object(rng, self.distractor_shapes, self.distractor_half_size, self.object_aspect,
                               rgb=_colour(rng, (0.15, 0.95)))
                for _ in range(count)
            ),
            table=self._texture(rng, self.table_brightness),
            floor=self._texture(rng, self.room_brightness),
            walls=self._texture(rng, self.room_brightness),
            key_light_dir=tuple(key_dir),
            key_light_rgb=_tinted(rng, rng.uniform(*self.light_diffuse), self.light_tint),
            fill_light_rgb=_tinted(rng, rng.uniform(*self.fill_diffuse), self.light_tint),
            ambient=float(rng.uniform(*self.ambient)),
            camera_offsets={
                role: (*(float(v) for v in rng.uniform(-1.0, 1.0, 3) * self.camera_position_jitter),
                       *(float(v) for v in rng.uniform(-1.0, 1.0, 3) * self.camera_rotation_jitter))
                for role in EXTERIOR_ROLES
            },
        )

    def _texture(self, rng: np.random.Generator, brightness: Range) -> TextureLook:
        pattern = str(rng.choice(self.texture_patterns))
        rgb1 = _colour(rng, brightness)
        # The second colour is a shade of the first: patterns stay patterns, not noise.
        rgb2 = tuple(float(c) for c in np.clip(np.asarray(rgb1) * rng.uniform(0.6, 1.0), 0.0, 1.0))
        return TextureLook(pattern=pattern, rgb1=rgb1, rgb2=rgb2, repeat=float(rng.uniform(*self.texture_repeat)),
                           speckle=float(rng.uniform(0.0, 0.15)))


@dataclass(frozen=True)
class ObjectLook:
    """One object's shape, MuJoCo geom size parameters and colour."""

    shape: str
    size: tuple[float, float, float]
    """MuJoCo geom `size`: box half extents; cylinder/capsule (radius, half height, 0); sphere (radius, 0, 0);
    ellipsoid semi-axes."""
    rgb: tuple[float, float, float]

    @property
    def half_height(self) -> float:
        """Height of the object's centre above the table when it stands upright."""
        radius, second, third = self.size
        return {"box": third, "cylinder": second, "sphere": radius, "capsule": radius + second,
                "ellipsoid": third}[self.shape]


@dataclass(frozen=True)
class TextureLook:
    pattern: str
    rgb1: tuple[float, float, float]
    rgb2: tuple[float, float, float]
    repeat: float
    speckle: float
    """Share of texels replaced by a darker shade (MuJoCo's random mark)."""


@dataclass(frozen=True)
class SceneVariation:
    """Concrete values of one randomised scene (what `DomainRandomization.sample` draws)."""

    object: ObjectLook
    """The manipulated object (body "cube")."""
    mug_rgb: tuple[float, float, float]
    target_rgb: tuple[float, float, float]
    distractors: tuple[ObjectLook, ...]
    table: TextureLook
    floor: TextureLook
    walls: TextureLook
    key_light_dir: tuple[float, float, float]
    key_light_rgb: tuple[float, float, float]
    fill_light_rgb: tuple[float, float, float]
    ambient: float
    camera_offsets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Exterior camera role -> (dx, dy, dz in m, base frame; rx, ry, rz in degrees about the camera's own axes),
    applied on top of the camera's nominal pose."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SceneVariation:
        """The variation a `to_json` string describes; ValueError if it is not one."""
        def look(d: dict) -> ObjectLook:
            return ObjectLook(str(d["shape"]), tuple(d["size"]), tuple(d["rgb"]))

        def tex(d: dict) -> TextureLook:
            return TextureLook(str(d["pattern"]), tuple(d["rgb1"]), tuple(d["rgb2"]), float(d["repeat"]),
                               float(d["speckle"]))

        try:
            raw = json.loads(text)
            return cls(
                object=look(raw["object"]), mug_rgb=tuple(raw["mug_rgb"]), target_rgb=tuple(raw["target_rgb"]),
                distractors=tuple(look(d) for d in raw["distractors"]), table=tex(raw["table"]),
                floor=tex(raw["floor"]), walls=tex(raw["walls"]), key_light_dir=tuple(raw["key_light_dir"]),
                key_light_rgb=tuple(raw["key_light_rgb"]), fill_light_rgb=tuple(raw["fill_light_rgb"]),
                ambient=float(raw["ambient"]),
                camera_offsets={role: tuple(v) for role, v in raw["camera_offsets"].items()},
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a scene variation: {exc}") from None


def variation_rng(seed: int) -> np.random.Generator:
    """The random stream a reset with `seed` draws its scene variation from (independent of the task's stream)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5CE4E]))


def apply_variation(spec: mujoco.MjSpec, variation: SceneVariation) -> None:
    """Write a variation into the scene's spec (built by `sim.scene.build_scene`, not yet compiled)."""
    cube = spec.geom("cube")
    _shape_geom(cube, variation.object)
    spec.geom("mug").rgba = [*variation.mug_rgb, 1.0]
    spec.geom("target").rgba = [*variation.target_rgb, 1.0]
    for i, look in enumerate(variation.distractors):
        body = spec.worldbody.add_body(name=f"{DISTRACTOR_PREFIX}{i}", pos=[1.5 + 0.2 * i, 1.2, look.half_height])
        body.add_freejoint(name=f"{DISTRACTOR_PREFIX}{i}_joint")
        geom = body.add_geom(name=f"{DISTRACTOR_PREFIX}{i}", friction=[1.0, 0.01, 0.001], condim=4)
        _shape_geom(geom, look)

    _set_texture(spec, "wood_tex", "table", variation.table)
    _set_texture(spec, "floor_tex", "floor", variation.floor)
    spec.add_texture(name="wall_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, width=128, height=128)
    wall_material = spec.add_material(name="wall", reflectance=0.0)
    wall_material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "wall_tex"
    _set_texture(spec, "wall_tex", "wall", variation.walls)
    for name in ("back_wall", "left_wall", "right_wall", "front_wall"):
        spec.geom(name).material = "wall"
        spec.geom(name).rgba = [1.0, 1.0, 1.0, 1.0]

    key, fill = spec.light("key_light"), spec.light("fill_light")
    key.dir = list(variation.key_light_dir)
    key.pos = list(np.array([0.5, 0.0, 0.2]) - 2.0 * np.asarray(variation.key_light_dir))
    key.diffuse = list(variation.key_light_rgb)
    fill.diffuse = list(variation.fill_light_rgb)
    spec.visual.headlight.ambient = [variation.ambient] * 3

    for role, offset in variation.camera_offsets.items():
        jitter_camera(spec, spec.camera(role), offset)


def jitter_camera(spec: mujoco.MjSpec, camera, offset: tuple[float, ...]) -> None:
    """Move a spec camera by (dx, dy, dz) in its parent's frame and turn it by (rx, ry, rz) degrees about its own x,
    y and z axes, starting from whatever pose it was given (its nominal placement, in any orientation form)."""
    dx, dy, dz, rx, ry, rz = offset
    camera.pos = list(np.asarray(camera.pos) + [dx, dy, dz])
    nominal = np.asarray(camera.quat, dtype=np.float64)
    if camera.alt.type != mujoco.mjtOrientation.mjORIENTATION_QUAT:
        nominal = np.asarray(mujoco.MjSpec.resolve_orientation(spec.compiler.degree, spec.compiler.eulerseq,
                                                               camera.alt))
        camera.alt.type = mujoco.mjtOrientation.mjORIENTATION_QUAT
    turn = np.zeros(4)
    mujoco.mju_euler2Quat(turn, np.radians([rx, ry, rz]), "XYZ")
    quat = np.zeros(4)
    mujoco.mju_mulQuat(quat, nominal, turn)
    camera.quat = list(quat)


def _shape_geom(geom, look: ObjectLook) -> None:
    geom.type = _GEOM_TYPES[look.shape]
    geom.size = list(look.size)
    geom.rgba = [*look.rgb, 1.0]
    geom.mass = _OBJECT_DENSITY * _volume(look)


def _volume(look: ObjectLook) -> float:
    a, b, c = look.size
    return {"box": 8 * a * b * c, "cylinder": 2 * math.pi * a * a * b, "sphere": 4 / 3 * math.pi * a ** 3,
            "capsule": math.pi * a * a * (2 * b + 4 / 3 * a), "ellipsoid": 4 / 3 * math.pi * a * b * c}[look.shape]


def _set_texture(spec: mujoco.MjSpec, texture: str, material: str, look: TextureLook) -> None:
    tex = spec.texture(texture)
    tex.builtin = _BUILTINS[look.pattern]
    tex.rgb1, tex.rgb2 = list(look.rgb1), list(look.rgb2)
    tex.mark = mujoco.mjtMark.mjMARK_RANDOM if look.speckle > 0 else mujoco.mjtMark.mjMARK_NONE
    tex.random = look.speckle
    tex.markrgb = list(np.asarray(look.rgb2) * 0.8)
    spec.material(material).texrepeat = [look.repeat, look.repeat]


def _sample_object(rng: np.random.Generator, shapes: tuple[str, ...], half_size: Range, aspect: Range,
                   rgb: tuple[float, float, float]) -> ObjectLook:
    shape = str(rng.choice(shapes))
    base = float(rng.uniform(*half_size))
    stretch = rng.uniform(*aspect, size=2)
    if shape == "box":
        size = (base, base * stretch[0], base * stretch[1])
    elif shape in ("cylinder", "capsule"):
        size = (base, base * stretch[0], 0.0)
    elif shape == "sphere":
        size = (base, 0.0, 0.0)
    else:
        size = (base, base * stretch[0], base * stretch[1])
    # A box or ellipsoid is never wider than the base range allows, so it still fits between the fingers.
    size = tuple(float(min(s, half_size[1])) if i < 2 else float(s) for i, s in enumerate(size))
    return ObjectLook(shape, size, rgb)


def _colour(rng: np.random.Generator, brightness: Range) -> tuple[float, float, float]:
    """A colour of random hue and saturation whose largest channel lies in `brightness`."""
    return _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.9), rng.uniform(*brightness))


def _saturated_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """A clearly coloured object (instructions name its colour)."""
    return _hsv(rng.uniform(0, 1), rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95))


def _hsv(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return tuple(float(c) for c in rgb)


def _tinted(rng: np.random.Generator, intensity: float, tint: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(intensity * (1.0 + rng.uniform(-tint, tint, 3)), 0.0, 1.0))


def _direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector a light shines along, coming from `azimuth` at `elevation` above the horizon."""
    horizontal = math.cos(elevation)
    return -np.array([horizontal * math.cos(azimuth), horizontal * math.sin(azimuth), math.sin(elevation)])
