"""The embedded default dataset, "narrated shapes": small H.264 videos of coloured shapes, narrated.

Why it exists: the TVTS pretext task shuffles K narration segments of a video and asks the model to
put them back in order using the video. This dataset is built so that the order can be recovered
*only* from the video, and only by seeing the motion: each narrated video is a sequence of 4-8
independent events (:data:`EVENT_SECONDS` = 5 s each, event ``e`` spans ``[5e, 5e + 5)``), every event is
an action of one shape drawn i.i.d. (action uniformly among the feasible ones, then the acting shape
uniformly among the shapes that can do it), so the sentences alone carry next to no order information
(only the 3 size levels constrain the order of one shape's Grow and Shrink), while each sentence names
exactly what happens on screen during its time span.

Scene: a plain or mildly textured dark background (different per scene) with 2-3 shapes, each of a
distinct kind (:data:`SHAPES`) and a distinct colour (:data:`COLOURS`), all drawn in their colours all the
time, in a fixed order. Kind and colour never change within a video, so "the red square" names one shape.
Sizes take one of 3 levels (ratio :data:`GROWTH` between levels); positions live on a torus (shapes wrap
around the frame edges).

No shortcut (version 3). What a single still frame shows is the same kind of picture at every moment:
which shape acts can only be seen by comparing frames, and how it acts only from their order.

- *No spotlight* by default: version 2 drew the idle shapes grey and only the acting one in colour, so the
  colour lit at each moment sorted the transcripts with no motion seen (and held-out action recognition
  stayed at chance). ``spotlight=True`` brings that look back, for comparison.
- *Direction pairs in shared scenes* (``scene_group``, default 2): videos 2j and 2j + 1 start from the same
  scene and have the same actors at the same moments, and the second does every action in the
  :data:`OPPOSITE` direction (its size levels mirrored, so every replayed Grow/Shrink is feasible). Their
  narrations are drawn independently. Kept in one training batch (``data.group_size``), each is the other's
  negative that appearance cannot tell apart: the same shapes, colours, background and moments, only the
  directions differ. ``scene_group=4`` puts two such pairs, with their own events, in one scene.

The narration names actions exactly as version 2 did (no word that gives the time order away).

Every non-circle shape carries a small black dot (its "eye") near its top, so that its orientation
is visible: without it a square turned by 90 degrees looks unchanged and a triangle turned 90 degrees
clockwise looks turned 30 degrees anticlockwise.

Actions (:data:`ACTIONS`, the class order used everywhere, 0-based in code, 1-based in
``classInd.txt``): ``MoveLeft``, ``MoveRight``, ``MoveUp``, ``MoveDown`` (slide by 1/4 of the frame),
``Grow``, ``Shrink`` (one size level, smooth geometric change), ``RotateClockwise``,
``RotateCounterclockwise`` (90 degrees as seen on screen; never a circle). Motion is eased
(``(1 - cos(pi u)) / 2`` for event progress ``u``); the other shapes stay still.

Narration: one sentence per event from several templates and synonyms ("now the red square moves
to the left", "watch the blue circle getting bigger"), spoken during the event (first word
0.2-0.8 s in, 0.3-0.45 s apart) with ASR-like noise: filler words, dropped (p=0.05) and
substituted (p=0.03) words, timestamp jitter (+-0.15 s) and, with p=0.1, the last 1-2 words
spilling up to 0.5 s past the event's end. The words naming the colour, the kind and the
direction/action are never dropped and only rarely (p=0.01) substituted by a homophone.

Layout written by :func:`make_synthetic` under ``out`` (it mirrors the public YT-Temporal, MSR-VTT
and UCF-101 layouts, so the same loaders read real and synthetic data)::

    out/dataset.json                                  written last: version, seed, parameters, summary
    out/yttemporal/videos/synth/data/vid_00000.mp4    narrated videos (train, then val: one numbering)
    out/yttemporal/videos/synth/annotations/vid_00000.json
    out/yttemporal/meta_data/yttemporal_train.csv     tab-separated, header "Name", rows "synth/data/vid_00000.mp4"
    out/yttemporal/meta_data/yttemporal_val.csv       held-out narrated videos (sort accuracy)
    out/heldout/videos/all/video0.mp4 ...             single-event clips (5 s event, 0-0.5 s still lead-in/out)
    out/heldout/msrvtt/MSRVTT_data.json               {"videos": [...], "sentences": [...]}, 2 captions per clip
    out/heldout/msrvtt/MSRVTT_JSFUSION_test.csv       "key,vid_key,video_id,sentence", test clips, first caption
    out/heldout/ucf/classInd.txt                      "1 MoveLeft" ... "8 RotateCounterclockwise"
    out/heldout/ucf/trainlist01.txt                   "MoveLeft/v_MoveLeft_g01_c01.mp4 1"
    out/heldout/ucf/testlist01.txt                    "MoveLeft/v_MoveLeft_g06_c01.mp4" (no label)
    out/heldout/ucf/videos/<Class>/v_<Class>_gXX_cYY.mp4   hard links to the heldout/videos/all clips

The annotation path rule is YT-Temporal's: ``<root>/videos/<first component of Name>/annotations/
<basename of Name without .mp4>.json``. An annotation holds ``subtitles`` (``[{"word", "time"}]``,
sorted by time, seconds), ``info`` (``duration``, ``fps``, ``width``, ``height``), ``denoised``
(one ``{"cleanasr": sentence}`` per event, the sentences before ASR noise), ``events`` (ground
truth: ``start``, ``end``, ``action``, ``shape``, ``colour``, ``caption``, and the acting shape's
``before``/``after`` state ``{"x", "y", "radius", "angle"}`` in pixels/degrees, positions modulo
the frame size) and ``shapes`` (the initial scene, same state fields plus ``shape``/``colour``).

Held-out clips: one event each, the same scenes, actions, timings and captions as version 2's; only the
idle shapes now show their colours (and the actor is no longer drawn on top of them), which can only make
the clips harder. Clip ``i`` has action ``ACTIONS[i % 8]``; within each class the clips alternate train/test (``i + i // 8`` even: train, odd: test), so every 16 consecutive clips give each class
one train and one test clip, and 8 clips already give 4 of each. Retrieval
uses the test half. Each MSR-VTT ``videos`` entry also carries the ground truth (``action``,
``category`` = 0-based class index, ``shape``, ``colour``, ``event_start``, ``event_end``,
``duration``) and its UCF-style path (``ucf_path``).

Deterministic for a seed, down to the decoded pixels: a video draws from generators seeded by ``[seed,
split_code, ...]`` and its own index, its scene's and its pair's (never from a shared stream), independent of
the number of workers, so the annotations and the drawn pictures are identical everywhere; the pictures are
converted to yuv420p in numpy (:func:`yuv420p`) and coded losslessly (version 4), so every decoder returns
exactly those planes (measured: two generations in two processes with different ``PYTHONHASHSEED`` gave
byte-identical files). Version 3 coded lossily (CRF 20), and a few % of its videos came out differently
depending on the state of the encoding process (one held-out clip gave three different files in one process
and in a pool worker), which changed the decoded pixels by a few levels and moved the main job's numbers in
the second digit between fresh clones. The lossless dataset is ~10 % larger than version 3's.

The pools start from a forkserver (:data:`tvts.data.watchdog.POOL_START`): a script that calls this with
``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.

Default size: 2400 train + 200 val narrated videos (~30 s each) and 320 held-out clips, 64x64 at
4 fps: about 50 s with 2 workers on an idle 2-core machine, ~95 MB.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tvts.data.watchdog import POOL_START

__all__ = [
    "ACTIONS",
    "CAPTIONS",
    "COLOURS",
    "EVENT_SECONDS",
    "GROWTH",
    "IDLE_GREY",
    "MOVE_FRACTION",
    "OPPOSITE",
    "NUM_EVENTS",
    "SHAPES",
    "SIZE_LEVELS",
    "VERSION",
    "make_synthetic",
    "yuv420p",
]

VERSION = "narrated-shapes/4"
"""Generator version; part of the cache key in ``dataset.json``. Bump it when the output changes."""

EVENT_SECONDS = 5.0
"""Length of one event; event ``e`` of a narrated video spans ``[e * EVENT_SECONDS, (e + 1) * EVENT_SECONDS)``."""

ACTIONS = (
    "MoveLeft",
    "MoveRight",
    "MoveUp",
    "MoveDown",
    "Grow",
    "Shrink",
    "RotateClockwise",
    "RotateCounterclockwise",
)
"""The 8 action classes, in class-index order (``classInd.txt`` numbers them from 1)."""

SHAPES = ("circle", "square", "triangle", "star", "diamond")

COLOURS = {
    "red": (225, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 95, 255),
    "yellow": (245, 225, 40),
    "white": (240, 240, 240),
    "purple": (190, 60, 235),
    "orange": (255, 140, 20),
    "cyan": (40, 215, 225),
}
"""Shape colours (RGB): hues far enough apart to survive H.264 4:2:0 and downscaling to 32x32."""

IDLE_GREY = (120, 120, 120)
"""Fill of the shapes that are not acting, with the (optional, off by default) *spotlight*: a shape
shows its colour only during its own events. Version 2 had it always on; it is a shortcut: which colour
is lit when sorts the transcripts and identifies the clip without seeing any motion (measured: held-out
action recognition stayed at chance while sorting reached 0.54)."""

OPPOSITE = {
    "MoveLeft": "MoveRight", "MoveRight": "MoveLeft", "MoveUp": "MoveDown", "MoveDown": "MoveUp",
    "Grow": "Shrink", "Shrink": "Grow",
    "RotateClockwise": "RotateCounterclockwise", "RotateCounterclockwise": "RotateClockwise",
}
"""Each action's opposite direction: the second video of a pair replays the first one's events with these."""

SIZE_LEVELS = (0.07, 0.112, 0.1792)
"""Shape radius (fraction of the frame side) at each of the 3 size levels; consecutive levels differ by :data:`GROWTH`."""

GROWTH = 1.6
MOVE_FRACTION = 0.25
"""A move slides the shape by this fraction of the frame side."""
NUM_EVENTS = (4, 8)
"""Inclusive range of the number of events in a narrated video."""

DEFAULT_NUM_TRAIN = 2400
DEFAULT_NUM_VAL = 200
DEFAULT_NUM_HELDOUT = 320

_SPLIT_CODES = {"train": 0, "val": 1, "heldout": 2}
_CLIPS_PER_UCF_GROUP = 4

# Vertices of each kind at radius 1, angle 0, in image coordinates (y points down); the circle is
# drawn as an ellipse of radius 1. Scales roughly equalise the areas of the kinds.
_STAR = [
    ((1.3 if k % 2 == 0 else 0.55) * math.cos(-math.pi / 2 + k * math.pi / 5),
     (1.3 if k % 2 == 0 else 0.55) * math.sin(-math.pi / 2 + k * math.pi / 5))
    for k in range(10)
]
_VERTICES = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(1.25 * math.cos(a), 1.25 * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)],
    "star": _STAR,
    "diamond": [(0.0, -1.35), (0.75, 0.0), (0.0, 1.35), (-0.75, 0.0)],
}
_EYE = (0.22, 0.45)
"""Radius and distance from the centre (towards the top at angle 0) of the black dot marking a non-circle
shape's orientation, in units of the shape radius: it makes a rotation's direction visible even between
frames taken at the start and end of the event (a square turned by 90 degrees looks the same otherwise)."""
_EXTENT = {"circle": 1.0, "square": 0.85 * math.sqrt(2), "triangle": 1.25, "star": 1.3, "diamond": 1.35}
"""Bounding radius of each kind, in units of the shape radius."""

# ----------------------------------------------------------------------------------------------
# Narration vocabulary
# ----------------------------------------------------------------------------------------------

CAPTIONS = {
    "MoveLeft": "moves left",
    "MoveRight": "moves right",
    "MoveUp": "moves up",
    "MoveDown": "moves down",
    "Grow": "grows",
    "Shrink": "shrinks",
    "RotateClockwise": "rotates clockwise",
    "RotateCounterclockwise": "rotates counterclockwise",
}
"""Canonical verb phrase per action: an event's caption is ``f"the {colour} {shape} {CAPTIONS[action]}"``."""

_VERB_PHRASES = {
    "MoveLeft": ["moves left", "moves to the left", "slides left", "slides to the left", "goes left",
                 "is moving left", "drifts to the left"],
    "MoveRight": ["moves right", "moves to the right", "slides right", "slides to the right", "goes right",
                  "is moving right", "drifts to the right"],
    "MoveUp": ["moves up", "moves upward", "slides up", "goes up", "is moving up", "rises", "drifts upward"],
    "MoveDown": ["moves down", "moves downward", "slides down", "goes down", "is moving down", "sinks",
                 "drifts downward"],
    "Grow": ["grows", "gets bigger", "is getting larger", "grows bigger", "expands", "becomes bigger",
             "grows in size"],
    "Shrink": ["shrinks", "gets smaller", "is getting smaller", "shrinks down", "contracts", "becomes smaller",
               "shrinks in size"],
    "RotateClockwise": ["rotates clockwise", "turns clockwise", "spins clockwise", "is rotating clockwise",
                        "makes a quarter turn clockwise", "twists clockwise"],
    "RotateCounterclockwise": ["rotates counterclockwise", "turns anticlockwise", "spins counterclockwise",
                               "is rotating anticlockwise", "makes a quarter turn counterclockwise",
                               "twists counterclockwise"],
}
_GERUND_PHRASES = {
    "MoveLeft": ["moving left", "sliding to the left", "going left", "drifting left"],
    "MoveRight": ["moving right", "sliding to the right", "going right", "drifting right"],
    "MoveUp": ["moving up", "sliding upward", "going up", "rising"],
    "MoveDown": ["moving down", "sliding downward", "going down", "sinking"],
    "Grow": ["getting bigger", "growing", "growing larger", "expanding"],
    "Shrink": ["getting smaller", "shrinking", "shrinking down", "contracting"],
    "RotateClockwise": ["rotating clockwise", "turning clockwise", "spinning clockwise"],
    "RotateCounterclockwise": ["rotating counterclockwise", "turning anticlockwise", "spinning counterclockwise"],
}
_PREFIXES = ["", "", "now", "next", "then", "and now", "and then", "here", "okay now"]
_GERUND_LEADS = ["watch", "look at", "now watch", "you can see", "here we see", "now look at"]
_FILLERS = ["um", "uh", "so", "okay", "like", "well", "yeah"]
_KEYWORDS = frozenset(
    "left right up upward down downward rises rising sinks sinking grows growing bigger larger expands "
    "expanding shrinks shrinking smaller contracts contracting clockwise counterclockwise anticlockwise".split()
)
"""Words carrying the action; with colour and shape words they are never dropped."""
_SUBSTITUTES = {
    "the": ["a", "this"], "to": ["two", "too"], "now": ["know", "no"], "moves": ["move", "moved"],
    "then": ["than", "and"], "is": ["his", "as"], "and": ["an", "in"], "watch": ["what", "wash"],
    "look": ["luck", "looks"], "at": ["that", "it"], "goes": ["go", "those"], "slides": ["slide", "sides"],
    "getting": ["get", "gettin"], "see": ["sea", "she"], "here": ["hear", "hair"], "we": ["he", "with"],
    "you": ["ya", "your"], "can": ["could", "and"], "next": ["text", "nest"], "gets": ["get", "gives"],
    "turns": ["turn", "terms"], "spins": ["spin", "pins"], "rotates": ["rotate", "rotated"],
    "drifts": ["drift", "gifts"], "becomes": ["become", "comes"], "okay": ["ok", "hey"],
    "red": ["read"], "blue": ["blew"], "white": ["wide"], "green": ["greene"], "yellow": ["hello"],
    "orange": ["orangey"], "cyan": ["sian"], "purple": ["pearl"], "square": ["squared"],
    "circle": ["circles"], "star": ["start"], "triangle": ["triangles"], "diamond": ["diamonds"],
    "right": ["write"], "up": ["op"], "grows": ["rose"], "bigger": ["figure"], "smaller": ["taller"],
}
"""ASR-like confusions (homophones and near words)."""

_P_DROP = 0.05
_P_SUBSTITUTE = 0.03
_P_SUBSTITUTE_KEY = 0.01
_P_FILLER = 0.3
_P_SPILL = 0.1
_JITTER = 0.15


def _sentence(rng: np.random.Generator, action: str, colour: str, shape: str) -> str:
    """A clean narration sentence for one event, from a random template."""
    np_ = f"the {colour} {shape}"
    if rng.random() < 0.3:
        lead = _GERUND_LEADS[rng.integers(len(_GERUND_LEADS))]
        phrases = _GERUND_PHRASES[action]
        return f"{lead} {np_} {phrases[rng.integers(len(phrases))]}"
    prefix = _PREFIXES[rng.integers(len(_PREFIXES))]
    phrases = _VERB_PHRASES[action]
    return " ".join(p for p in (prefix, np_, phrases[rng.integers(len(phrases))]) if p)


def _asr_noise(rng: np.random.Generator, sentence: str) -> list[str]:
    """Words of ``sentence`` as a noisy ASR would hear them: fillers, drops and substitutions."""
    protected = _KEYWORDS | set(COLOURS) | set(SHAPES)
    words = []
    for w in sentence.split():
        key = w in protected
        if not key and rng.random() < _P_DROP:
            continue
        if w in _SUBSTITUTES and rng.random() < (_P_SUBSTITUTE_KEY if key else _P_SUBSTITUTE):
            options = _SUBSTITUTES[w]
            w = options[rng.integers(len(options))]
        words.append(w)
    if rng.random() < _P_FILLER:
        words.insert(int(rng.integers(len(words) + 1)), _FILLERS[rng.integers(len(_FILLERS))])
    return words


def _word_times(rng: np.random.Generator, n: int, start: float, end: float, earliest: float) -> list[float]:
    """Onsets of ``n`` words spoken during ``[start, end)``, not before ``earliest``; maybe spilling past ``end``."""
    first = max(start + rng.uniform(0.2, 0.8), earliest)
    spacing = rng.uniform(0.3, 0.45)
    room = end - 0.3 - first
    if n > 1 and (n - 1) * spacing > room:
        spacing = room / (n - 1)
    times = first + spacing * np.arange(n) + rng.uniform(-_JITTER, _JITTER, n)
    times = np.sort(np.clip(times, start + 0.02, end - 0.05))
    if n >= 4 and rng.random() < _P_SPILL:
        k = int(rng.integers(1, 3))
        times[n - k:] = end + rng.uniform(0.05, 0.2) + 0.3 * np.arange(k)
    return [round(float(t), 2) for t in times]


def _narration(rng: np.random.Generator, events: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(subtitles, denoised)`` for a list of events with ``start``/``end``/``action``/``shape``/``colour``."""
    subtitles, denoised = [], []
    earliest = 0.0
    for ev in events:
        clean = _sentence(rng, ev["action"], ev["colour"], ev["shape"])
        words = _asr_noise(rng, clean)
        times = _word_times(rng, len(words), ev["start"], ev["end"], earliest)
        subtitles += [{"word": w, "time": t} for w, t in zip(words, times)]
        denoised.append({"cleanasr": clean})
        earliest = times[-1] + 0.25
    return subtitles, denoised


# ----------------------------------------------------------------------------------------------
# Scenes, events and rendering
# ----------------------------------------------------------------------------------------------


def _radius(level: int, size: int) -> float:
    return SIZE_LEVELS[level] * size


def _new_scene(rng: np.random.Generator, size: int) -> list[dict]:
    """2-3 shapes of distinct kinds and colours, placed apart from each other on the torus."""
    n = int(rng.integers(2, 4))
    kinds = rng.choice(len(SHAPES), n, replace=False)
    colours = rng.choice(len(COLOURS), n, replace=False)
    names = list(COLOURS)
    scene = []
    for k, c in zip(kinds, colours):
        level = int(rng.integers(3))
        for _ in range(50):
            x, y = rng.uniform(0, size, 2)
            if all(_torus_dist(x, y, s["x"], s["y"], size) > 0.8 * (_radius(level, size) + s["radius"]) for s in scene):
                break
        scene.append({
            "shape": SHAPES[k], "colour": names[c], "x": float(x), "y": float(y), "level": level,
            "radius": _radius(level, size), "angle": float(rng.uniform(0, 360)),
        })
    return scene


def _torus_dist(x0: float, y0: float, x1: float, y1: float, size: int) -> float:
    dx = abs(x0 - x1) % size
    dy = abs(y0 - y1) % size
    return math.hypot(min(dx, size - dx), min(dy, size - dy))


def _feasible(action: str, shape: dict) -> bool:
    if action == "Grow":
        return shape["level"] < len(SIZE_LEVELS) - 1
    if action == "Shrink":
        return shape["level"] > 0
    if action.startswith("Rotate"):
        return shape["shape"] != "circle"
    return True


def _pick_actor(rng: np.random.Generator, action: str, scene: list[dict]) -> int | None:
    """Index of a uniformly chosen shape that can do ``action``, or ``None`` if none can."""
    able = [i for i, s in enumerate(scene) if _feasible(action, s)]
    return able[int(rng.integers(len(able)))] if able else None


def _apply(action: str, shape: dict, progress: float, size: int) -> dict:
    """State of ``shape`` after ``progress`` (0..1, already eased) of ``action``."""
    out = dict(shape)
    step = MOVE_FRACTION * size * progress
    if action == "MoveLeft":
        out["x"] = (shape["x"] - step) % size
    elif action == "MoveRight":
        out["x"] = (shape["x"] + step) % size
    elif action == "MoveUp":
        out["y"] = (shape["y"] - step) % size
    elif action == "MoveDown":
        out["y"] = (shape["y"] + step) % size
    elif action in ("Grow", "Shrink"):
        sign = 1 if action == "Grow" else -1
        out["radius"] = shape["radius"] * GROWTH ** (sign * progress)
        if progress >= 1.0:
            out["level"] = shape["level"] + sign
            out["radius"] = _radius(out["level"], size)
    else:
        sign = 1 if action == "RotateClockwise" else -1  # positive angle = clockwise on screen (y down)
        out["angle"] = (shape["angle"] + sign * 90.0 * progress) % 360.0
    return out


def _ease(u: float) -> float:
    return (1.0 - math.cos(math.pi * min(max(u, 0.0), 1.0))) / 2.0


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A dark colour, optionally with a smooth low-frequency texture."""
    base = rng.uniform(8, 50, 3)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if rng.random() < 0.6:
        coarse = (rng.uniform(-1, 1, (4, 4, 3)) * rng.uniform(4, 14)).astype(np.float32)
        img += np.stack([np.asarray(Image.fromarray(coarse[:, :, c]).resize((size, size), Image.BILINEAR))
                         for c in range(3)], axis=-1)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _draw(draw: ImageDraw.ImageDraw, shape: dict, size: int, idle: bool = False) -> None:
    """Draw one shape (in :data:`IDLE_GREY` when ``idle``), with copies shifted by the frame size where
    it wraps around an edge."""
    r, kind = shape["radius"], shape["shape"]
    fill = IDLE_GREY if idle else COLOURS[shape["colour"]]
    extent = _EXTENT[kind] * r
    if kind != "circle":
        a = math.radians(shape["angle"])
        ca, sa = math.cos(a), math.sin(a)
        verts = [(r * (vx * ca - vy * sa), r * (vx * sa + vy * ca)) for vx, vy in _VERTICES[kind]]
        ex, ey = r * _EYE[1] * sa, -r * _EYE[1] * ca  # the eye's offset (0, -_EYE[1]) rotated
        er = r * _EYE[0]
    for ox in (-size, 0, size):
        cx = shape["x"] + ox
        if cx + extent < 0 or cx - extent >= size:
            continue
        for oy in (-size, 0, size):
            cy = shape["y"] + oy
            if cy + extent < 0 or cy - extent >= size:
                continue
            if kind == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                draw.polygon([(cx + vx, cy + vy) for vx, vy in verts], fill=fill)
                draw.ellipse([cx + ex - er, cy + ey - er, cx + ex + er, cy + ey + er], fill=(0, 0, 0))


def _frames(background: Image.Image, scene: list[dict], events: list[dict], num_frames: int, fps: float,
            spotlight: bool = False):
    """Yield ``num_frames`` RGB frames (PIL images) of ``scene`` going through ``events`` (times in seconds).

    Shapes are drawn in scene order, every one in its colour. With ``spotlight`` the shapes that are not
    acting are drawn grey and the acting one on top (version 2's look)."""
    size = background.width
    states = [scene]
    for ev in events:
        after = list(states[-1])
        after[ev["actor"]] = _apply(ev["action"], after[ev["actor"]], 1.0, size)
        states.append(after)
    for i in range(num_frames):
        t = i / fps
        current, actor = states[0], None
        for e, ev in enumerate(events):
            if t >= ev["end"]:
                current = states[e + 1]
            elif t >= ev["start"]:
                actor = ev["actor"]
                current = list(states[e])
                u = _ease((t - ev["start"]) / (ev["end"] - ev["start"]))
                current[actor] = _apply(ev["action"], current[actor], u, size)
                break
        img = background.copy()
        draw = ImageDraw.Draw(img)
        for j, shape in enumerate(current):
            if not (spotlight and j == actor):
                _draw(draw, shape, size, idle=spotlight)
        if spotlight and actor is not None:
            _draw(draw, current[actor], size)
        yield img


# RGB -> BT.601 limited-range Y'CbCr (rows: Y, Cb, Cr), the matrix every decoder assumes for untagged SD video.
_YUV601 = ((0.256788, 0.504129, 0.097906), (-0.148223, -0.290993, 0.439216), (0.439216, -0.367788, -0.071427))


def yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB pictures ``uint8 [..., H, W, 3]`` (even sides) → their yuv420p planes, each picture's as one
    ``uint8 [..., H * 3 / 2, W]`` array (the Y plane, then the U and the V planes, each 2x2 block's chroma
    averaged). Computed here rather than by swscale so that what the encoder is handed depends on nothing but
    the drawing."""
    rgb = np.asarray(rgb, dtype=np.float32)
    h, w = rgb.shape[-3:-1]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]

    def plane(row, offset, lo, hi, subsample):
        x = row[0] * r + row[1] * g + row[2] * b + offset
        if subsample:
            x = (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25
            x = x.reshape(*x.shape[:-2], h // 4, w)
        return np.clip(np.rint(x), lo, hi)

    y, u, v = _YUV601
    return np.concatenate([plane(y, 16.0, 16, 235, False), plane(u, 128.0, 16, 240, True),
                           plane(v, 128.0, 16, 240, True)], axis=-2).astype(np.uint8)


def _write_mp4(path: Path, frames, size: int, fps: float) -> None:
    """Encode ``frames`` (PIL RGB images) as lossless H.264/yuv420p (x264 ``qp=0``: High 4:4:4 Predictive
    profile, which FFmpeg-based readers and browsers decode) with a keyframe every 2 s.

    Lossless, so that the decoded pixels are exactly :func:`yuv420p` of the drawn pictures, whatever the
    encoder decides: x264's decisions (and so its lossy output) varied with the state of the encoding process
    (version 3), which moved the main job's numbers between fresh clones."""
    import av  # imported here so that importing this module stays light

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, round(2 * fps))
        stream.codec_context.thread_count = 1  # parallelised per video instead
        stream.options = {"qp": "0", "preset": "veryfast", "x264-params": "scenecut=0"}
        for img in frames:  # one picture at a time: faster than the whole video at once (cache-sized arrays)
            planes = yuv420p(np.asarray(img.convert("RGB")))
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _state_record(shape: dict) -> dict:
    return {k: round(shape[k], 2) for k in ("x", "y", "radius", "angle")}


def _event_records(scene: list[dict], events: list[dict], size: int) -> list[dict]:
    """Ground-truth event records for the annotation, with the actor's state before and after."""
    records, state = [], list(scene)
    for ev in events:
        shape = state[ev["actor"]]
        after = _apply(ev["action"], shape, 1.0, size)
        records.append({
            "start": round(ev["start"], 3), "end": round(ev["end"], 3), "action": ev["action"],
            "shape": shape["shape"], "colour": shape["colour"],
            "caption": f"the {shape['colour']} {shape['shape']} {CAPTIONS[ev['action']]}",
            "before": _state_record(shape), "after": _state_record(after),
        })
        state = list(state)
        state[ev["actor"]] = after
    return records


def _scene_record(scene: list[dict]) -> list[dict]:
    return [{"shape": s["shape"], "colour": s["colour"], **_state_record(s)} for s in scene]


def _mirror_scene(scene: list[dict], size: int) -> list[dict]:
    """The scene with every size level mirrored (level l -> 2 - l), so that the opposite of any feasible
    Grow/Shrink sequence is feasible too; kinds, colours, positions and angles stay."""
    top = len(SIZE_LEVELS) - 1
    return [{**s, "level": top - s["level"], "radius": _radius(top - s["level"], size)} for s in scene]


def _narrated_video(task: dict) -> dict:
    """Generate one narrated video and its annotation (runs in a worker process).

    Each event draws its action first, then the actor among the shapes that can do it. With
    ``scene_group`` = G > 1, the G consecutive videos ``G*g ... G*g + G - 1`` share one scene (background,
    shapes, positions, angles) and come in direction pairs: videos 2j and 2j + 1 share their events, the
    second doing each in the :data:`OPPOSITE` direction (with its size levels mirrored, so every replayed
    Grow/Shrink is feasible); different pairs of a group draw their events independently. The narration of
    each video is drawn on its own."""
    size, fps, index, group = task["size"], task["fps"], task["index"], task["scene_group"]
    seed, code = task["seed"], _SPLIT_CODES[task["split"]]
    rng = np.random.default_rng([seed, code, index // group if group > 1 else index])
    background = _background(rng, size)
    scene = _new_scene(rng, size)
    if group > 1:
        rng = np.random.default_rng([seed, code, index // 2, 1])  # the pair's events
    num_events = int(rng.integers(NUM_EVENTS[0], NUM_EVENTS[1] + 1))
    events, state = [], list(scene)
    while len(events) < num_events:
        action = ACTIONS[rng.integers(len(ACTIONS))]
        actor = _pick_actor(rng, action, state)
        if actor is None:
            continue
        start = len(events) * EVENT_SECONDS
        events.append({"action": action, "actor": actor, "start": start, "end": start + EVENT_SECONDS})
        state = list(state)
        state[actor] = _apply(action, state[actor], 1.0, size)
    if group > 1:
        if index % 2 == 1:
            scene = _mirror_scene(scene, size)
            events = [{**ev, "action": OPPOSITE[ev["action"]]} for ev in events]
        rng = np.random.default_rng([seed, code, index, 2])  # this video's own narration
    records = _event_records(scene, events, size)
    subtitles, denoised = _narration(rng, records)
    duration = num_events * EVENT_SECONDS
    num_frames = int(round(duration * fps))
    _write_mp4(Path(task["video"]), _frames(background, scene, events, num_frames, fps, task["spotlight"]), size, fps)
    annotation = {
        "subtitles": subtitles,
        "info": {"duration": duration, "fps": fps, "width": size, "height": size},
        "denoised": denoised,
        "events": records,
        "shapes": _scene_record(scene),
    }
    Path(task["annotation"]).write_text(json.dumps(annotation, separators=(",", ":")) + "\n")
    return {"split": task["split"], "index": index, "bytes": os.path.getsize(task["video"])}


def _heldout_clip(task: dict) -> dict:
    """Generate one single-event clip of class ``ACTIONS[index % 8]`` (runs in a worker process)."""
    size, fps, index = task["size"], task["fps"], task["index"]
    rng = np.random.default_rng([task["seed"], _SPLIT_CODES["heldout"], index])
    action = ACTIONS[index % len(ACTIONS)]
    background = _background(rng, size)
    actor = None
    while actor is None:  # e.g. Grow with every shape already at the largest size: draw a new scene
        scene = _new_scene(rng, size)
        actor = _pick_actor(rng, action, scene)
    lead = int(rng.integers(0, int(0.5 * fps) + 1))
    tail = int(rng.integers(0, int(0.5 * fps) + 1))
    event_frames = int(round(EVENT_SECONDS * fps))
    num_frames = lead + event_frames + tail
    start, end = lead / fps, (lead + event_frames) / fps
    events = [{"action": action, "actor": actor, "start": start, "end": end}]
    _write_mp4(Path(task["video"]), _frames(background, scene, events, num_frames, fps, task["spotlight"]), size, fps)
    record = _event_records(scene, events, size)[0]
    colour, shape = record["colour"], record["shape"]
    alternatives = [p for p in _VERB_PHRASES[action] if p != CAPTIONS[action]]
    article = "a" if rng.random() < 0.5 else "the"
    second = f"{article} {colour} {shape} {alternatives[rng.integers(len(alternatives))]}"
    return {
        "split": "heldout", "index": index, "bytes": os.path.getsize(task["video"]),
        "action": action, "shape": shape, "colour": colour, "event_start": round(start, 3),
        "event_end": round(end, 3), "duration": round(num_frames / fps, 3),
        "captions": [record["caption"], second],
    }


def _run(task: dict) -> dict:
    return _heldout_clip(task) if task["split"] == "heldout" else _narrated_video(task)


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _heldout_split(index: int) -> str:
    """``"train"`` or ``"test"``: every 16 consecutive clips give each class one clip of each half."""
    return "train" if (index + index // len(ACTIONS)) % 2 == 0 else "test"


def _write_heldout(root: Path, clips: list[dict]) -> None:
    """MSR-VTT and UCF-101 style files for the held-out clips (sorted by index)."""
    msrvtt, ucf = root / "msrvtt", root / "ucf"
    (ucf / "videos").mkdir(parents=True)
    msrvtt.mkdir(parents=True)
    videos, sentences, test_rows = [], [], []
    trainlist, testlist = [], []
    # UCF-style names: a class's train clips fill groups g01, g02, ... (4 clips each), its test
    # clips the groups after them.
    splits = {c["index"]: _heldout_split(c["index"]) for c in clips}
    n_train = {a: sum(1 for c in clips if c["action"] == a and splits[c["index"]] == "train") for a in ACTIONS}
    seen = {(a, s): 0 for a in ACTIONS for s in ("train", "test")}
    for clip in clips:
        i, action, split = clip["index"], clip["action"], splits[clip["index"]]
        k = seen[action, split]
        seen[action, split] += 1
        if split == "test":
            k += -(-n_train[action] // _CLIPS_PER_UCF_GROUP) * _CLIPS_PER_UCF_GROUP
        group = k // _CLIPS_PER_UCF_GROUP + 1
        ucf_path = f"{action}/v_{action}_g{group:02d}_c{k % _CLIPS_PER_UCF_GROUP + 1:02d}.mp4"
        (ucf / "videos" / action).mkdir(exist_ok=True)
        _link_or_copy(root / "videos" / "all" / f"video{i}.mp4", ucf / "videos" / ucf_path)
        label = ACTIONS.index(action)
        if split == "train":
            trainlist.append((label, f"{ucf_path} {label + 1}"))
        else:
            testlist.append((label, ucf_path))
            test_rows.append([f"ret{len(test_rows)}", f"msr{i}", f"video{i}", clip["captions"][0]])
        videos.append({
            "video_id": f"video{i}", "id": i, "split": split, "category": label, "action": action,
            "shape": clip["shape"], "colour": clip["colour"], "event_start": clip["event_start"],
            "event_end": clip["event_end"], "duration": clip["duration"], "ucf_path": ucf_path,
        })
        for caption in clip["captions"]:
            sentences.append({"video_id": f"video{i}", "caption": caption, "sen_id": len(sentences)})
    (msrvtt / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}, separators=(",", ":")) + "\n")
    with open(msrvtt / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        writer.writerows(test_rows)
    (ucf / "classInd.txt").write_text("".join(f"{k + 1} {a}\n" for k, a in enumerate(ACTIONS)))
    (ucf / "trainlist01.txt").write_text("".join(line + "\n" for _, line in sorted(trainlist)))
    (ucf / "testlist01.txt").write_text("".join(line + "\n" for _, line in sorted(testlist)))


def _generate(tasks: list[dict], workers: int):
    """Yield the result of every task (in completion order), using ``workers`` processes."""
    if workers <= 1:
        yield from map(_run, tasks)
        return
    with mp.get_context(POOL_START).Pool(workers) as pool:
        yield from pool.imap_unordered(_run, tasks, chunksize=4)


def _progress_bar(total: int):
    """A tqdm progress bar, or ``None`` when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="narrated shapes", unit="video")


def _paths(out: Path) -> dict:
    yt, held = out / "yttemporal", out / "heldout"
    return {
        "root": out,
        "dataset_json": out / "dataset.json",
        "yttemporal_root": yt,
        "train_csv": yt / "meta_data" / "yttemporal_train.csv",
        "val_csv": yt / "meta_data" / "yttemporal_val.csv",
        "heldout_root": held,
        "heldout_videos": held / "videos" / "all",
        "msrvtt_json": held / "msrvtt" / "MSRVTT_data.json",
        "msrvtt_test_csv": held / "msrvtt" / "MSRVTT_JSFUSION_test.csv",
        "ucf_root": held / "ucf",
        "ucf_videos": held / "ucf" / "videos",
        "ucf_class_ind": held / "ucf" / "classInd.txt",
        "ucf_trainlist": held / "ucf" / "trainlist01.txt",
        "ucf_testlist": held / "ucf" / "testlist01.txt",
    }


def make_synthetic(
    out: str | os.PathLike,
    seed: int = 0,
    *,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    num_heldout: int = DEFAULT_NUM_HELDOUT,
    size: int = 64,
    fps: float = 4.0,
    spotlight: bool = False,
    scene_group: int = 2,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Generate the "narrated shapes" dataset under ``out`` (see the module docstring for the layout).

    Args:
        out: output directory (created). Its ``yttemporal/`` and ``heldout/`` sub-directories are
            replaced when the dataset is (re)generated; nothing else in it is touched.
        seed: the seed; the same seed gives byte-identical annotations and identical decoded frames.
        num_train / num_val: narrated videos listed in ``yttemporal_train.csv`` / ``yttemporal_val.csv``.
        num_heldout: single-event clips for the MSR-VTT-style and UCF-style held-out sets
            (class-balanced, half train and half test).
        size: frame width and height in pixels.
        fps: frames per second of every video.
        spotlight: draw the shapes that are not acting in grey (version 2's look: a shortcut, see
            :data:`IDLE_GREY`); off by default.
        scene_group: G consecutive narrated videos share a scene and come in direction pairs (1: every video
            on its own; else even; see :func:`_narrated_video`). The training sampler keeps a group in one
            batch with ``data.group_size: G``.
        workers: processes generating videos in parallel (one video per task); ``<= 1`` runs in
            this process. Does not change the output.
        progress: show a tqdm progress bar (if tqdm is installed).

    Returns:
        A summary: ``cached`` (True when ``out/dataset.json`` already described the same version,
        seed and parameters, and nothing was generated), ``seconds`` (time this call took),
        ``generation_seconds`` (time the generation took, possibly in an earlier call), the counts,
        ``classes`` (= :data:`ACTIONS`), ``video_bytes``, and absolute paths as strings:
        ``root``, ``dataset_json``, ``yttemporal_root``, ``train_csv``, ``val_csv``,
        ``heldout_root``, ``heldout_videos``, ``msrvtt_json``, ``msrvtt_test_csv``, ``ucf_root``,
        ``ucf_videos``, ``ucf_class_ind``, ``ucf_trainlist``, ``ucf_testlist``.
    """
    t0 = time.perf_counter()
    out = Path(out).absolute()
    seed = int(seed)
    params = {
        "num_train": int(num_train), "num_val": int(num_val), "num_heldout": int(num_heldout),
        "size": int(size), "fps": float(fps), "event_seconds": EVENT_SECONDS,
        "spotlight": bool(spotlight), "scene_group": int(scene_group),
    }
    bad_group = scene_group < 1 or (scene_group > 1 and scene_group % 2)
    if min(params["num_train"], params["num_val"], params["num_heldout"]) < 0 or size < 16 or fps <= 0 or bad_group:
        raise ValueError(f"bad parameters for make_synthetic: {params}")
    paths = {k: str(v) for k, v in _paths(out).items()}
    marker = out / "dataset.json"
    if marker.exists():
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("version") == VERSION and meta.get("seed") == seed and meta.get("params") == params:
            return {**meta["summary"], **paths, "cached": True, "seconds": time.perf_counter() - t0}
        marker.unlink()

    yt, held = out / "yttemporal", out / "heldout"
    for d in (yt, held):
        if d.exists():
            shutil.rmtree(d)
    (yt / "videos" / "synth" / "data").mkdir(parents=True)
    (yt / "videos" / "synth" / "annotations").mkdir(parents=True)
    (yt / "meta_data").mkdir(parents=True)
    (held / "videos" / "all").mkdir(parents=True)

    common = {"seed": seed, "size": params["size"], "fps": params["fps"], "spotlight": params["spotlight"],
              "scene_group": params["scene_group"]}
    names = {"train": [], "val": []}
    tasks = []
    for split, count, offset in (("train", num_train, 0), ("val", num_val, num_train)):
        for index in range(count):
            stem = f"vid_{offset + index:05d}"
            names[split].append(f"synth/data/{stem}.mp4")
            tasks.append({**common, "split": split, "index": index,
                          "video": str(yt / "videos" / "synth" / "data" / f"{stem}.mp4"),
                          "annotation": str(yt / "videos" / "synth" / "annotations" / f"{stem}.json")})
    for index in range(num_heldout):
        tasks.append({**common, "split": "heldout", "index": index,
                      "video": str(held / "videos" / "all" / f"video{index}.mp4")})

    bar = _progress_bar(len(tasks)) if progress else None
    results = []
    try:
        for result in _generate(tasks, workers):
            results.append(result)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()

    for split in ("train", "val"):
        with open(yt / "meta_data" / f"yttemporal_{split}.csv", "w", newline="") as f:
            f.write("Name\n" + "".join(name + "\n" for name in names[split]))
    clips = sorted((r for r in results if r["split"] == "heldout"), key=lambda r: r["index"])
    _write_heldout(held, clips)

    summary = {
        "version": VERSION, "seed": seed, **params, "classes": list(ACTIONS),
        "video_bytes": sum(r["bytes"] for r in results),
        "generation_seconds": round(time.perf_counter() - t0, 2),
    }
    meta = {"generator": "tvts.data.synthetic", "version": VERSION, "seed": seed, "params": params,
            "summary": summary}
    tmp = marker.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, marker)
    return {**summary, **paths, "cached": False, "seconds": time.perf_counter() - t0}
