"""Readers of the standard annotation files of the evaluation datasets.

Each reader takes the dataset folder ``root`` (the annotation files are looked for in ``root`` and in its
direct sub-folders) and a video folder (default ``root/videos``, searched recursively; a video is found by
its relative path or by its file name without extension, in any container FFmpeg reads). It returns a
:class:`RetrievalSet` (videos + captions) or a :class:`LabelledSet` (videos + class labels). The docstring of
each reader states the files, the split and the caption selection; ``name`` (e.g. ``"msrvtt-1ka"``) is the
protocol version put in the result names.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tvts.errors import ConfigError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


@dataclass
class RetrievalSet:
    """``captions[i]`` describes video ``text_to_video[i]`` (an index into ``video_ids``/``paths``)."""

    name: str
    video_ids: list[str]
    paths: list[str]
    captions: list[str]
    text_to_video: list[int]


@dataclass
class LabelledSet:
    """Videos with a class label each (``labels[i]`` indexes ``class_names``). ``descriptions`` (SSV2
    only): the per-video description text, used by SSV2-MC."""

    name: str
    video_ids: list[str]
    paths: list[str]
    labels: list[int]
    class_names: list[str]
    descriptions: list[str] = field(default_factory=list)


class VideoIndex:
    """Every video file (``extensions``; :data:`IMAGE_EXTENSIONS` for images) under a folder, by relative
    POSIX path and by file stem."""

    def __init__(self, folder: str | os.PathLike, extensions: tuple[str, ...] = VIDEO_EXTENSIONS):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"{'image' if extensions == IMAGE_EXTENSIONS else 'video'} folder not found",
                              source=str(self.folder))
        self.by_rel: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        for dirpath, _, files in os.walk(self.folder):
            for f in sorted(files):
                if f.lower().endswith(extensions):
                    p = Path(dirpath) / f
                    self.by_rel[p.relative_to(self.folder).as_posix()] = str(p)
                    self.by_stem.setdefault(p.stem, str(p))

    def find(self, name: str) -> str:
        """The path of ``name`` (a relative path or a stem, with or without extension)."""
        hit = self.by_rel.get(name) or self.by_stem.get(name) or self.by_stem.get(Path(name).stem)
        if hit is None:
            raise ConfigError(f"video {name!r} not found", source=str(self.folder))
        return hit


def find_file(root: str | os.PathLike, name: str) -> Path:
    """``root/name`` or ``root/<sub>/name`` (first match in sorted order)."""
    root = Path(root)
    candidates = [root / name, *sorted(p / name for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for c in candidates:
        if c.exists():
            return c
    raise ConfigError(f"annotation file {name!r} not found in {root} or its sub-folders", source=str(root))


def _videos(root, videos) -> VideoIndex:
    return VideoIndex(videos if videos else Path(root) / "videos")


def _retrieval(name, ids: list[str], captions_by_video: dict[str, list[str]], index: VideoIndex) -> RetrievalSet:
    captions, t2v = [], []
    for i, v in enumerate(ids):
        captions += captions_by_video[v]
        t2v += [i] * len(captions_by_video[v])
    return RetrievalSet(name, ids, [index.find(v) for v in ids], captions, t2v)


def read_msrvtt_1ka(root, videos=None) -> RetrievalSet:
    """MSR-VTT 1k-A (``msrvtt-1ka``): ``MSRVTT_JSFUSION_test.csv`` (columns ``key,vid_key,video_id,sentence``),
    one row per test video: that row's ``sentence`` is the video's only caption (the JSFusion split of 1000
    videos). Videos ``<video_id>.mp4`` (default folder ``root/videos``, e.g. ``videos/all``)."""
    path = find_file(root, "MSRVTT_JSFUSION_test.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"video_id", "sentence"} <= set(rows[0]):
        raise ConfigError("expected the columns key,vid_key,video_id,sentence", source=str(path))
    ids = [r["video_id"] for r in rows]
    return _retrieval("msrvtt-1ka", ids, {r["video_id"]: [r["sentence"]] for r in rows}, _videos(root, videos))


def read_msrvtt_full(root, videos=None) -> RetrievalSet:
    """MSR-VTT 1k-A videos with all their captions (``msrvtt-1ka-allcaps``): the test videos of
    ``MSRVTT_JSFUSION_test.csv``, every sentence of ``MSRVTT_data.json`` (``sentences[].video_id/caption``) for
    them, each a query."""
    base = read_msrvtt_1ka(root, videos)
    path = find_file(root, "MSRVTT_data.json")
    caps: dict[str, list[str]] = {v: [] for v in base.video_ids}
    for s in json.loads(path.read_text(encoding="utf-8"))["sentences"]:
        if s["video_id"] in caps:
            caps[s["video_id"]].append(s["caption"])
    missing = [v for v, c in caps.items() if not c]
    if missing:
        raise ConfigError(f"no sentences for {len(missing)} test videos, e.g. {missing[0]}", source=str(path))
    return RetrievalSet("msrvtt-1ka-allcaps", base.video_ids, base.paths,
                        [c for v in base.video_ids for c in caps[v]],
                        [i for i, v in enumerate(base.video_ids) for _ in caps[v]])


def read_msvd(root, videos=None) -> RetrievalSet:
    """MSVD test split (``msvd-test``): ``test_list.txt`` (one video name per line, 670 videos) and
    ``AllVideoDescriptions.txt`` (lines ``<video name> <caption>``; lines starting with ``#`` are comments);
    every caption of a test video is a query (about 41 per video). Videos ``<name>.avi`` (``YouTubeClips``)."""
    ids = [ln.strip() for ln in find_file(root, "test_list.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    caps: dict[str, list[str]] = {v: [] for v in ids}
    path = find_file(root, "AllVideoDescriptions.txt")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            vid, _, caption = line.strip().partition(" ")
            if vid in caps and caption.strip():
                caps[vid].append(caption.strip())
    missing = [v for v, c in caps.items() if not c]
    if missing:
        raise ConfigError(f"no descriptions for {len(missing)} test videos, e.g. {missing[0]}", source=str(path))
    return _retrieval("msvd-test", ids, caps, _videos(root, videos))


def read_didemo(root, videos=None) -> RetrievalSet:
    """DiDeMo paragraph-to-video (``didemo-test-paragraph``): ``test_data.json`` (a list of
    ``{"video", "description", "times", ...}``); the descriptions of a video, in file order and joined with
    a space, are its one paragraph query. Videos are found by the stem of ``video``."""
    rows = json.loads(find_file(root, "test_data.json").read_text(encoding="utf-8"))
    paragraphs: dict[str, list[str]] = {}
    for r in rows:
        paragraphs.setdefault(r["video"], []).append(r["description"].strip())
    ids = list(paragraphs)
    return _retrieval("didemo-test-paragraph", ids, {v: [" ".join(d)] for v, d in paragraphs.items()},
                      _videos(root, videos))


def read_lsmdc(root, videos=None) -> RetrievalSet:
    """LSMDC 2016 challenge test (``lsmdc-1k``): ``LSMDC16_challenge_1000_publictect.csv``, tab-separated,
    first column the clip name, last column its caption (1000 clips, one caption each). Videos
    ``<movie>/<clip name>.avi``, found by the clip name."""
    path = find_file(root, "LSMDC16_challenge_1000_publictect.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 2]
    return _retrieval("lsmdc-1k", [r[0] for r in rows], {r[0]: [r[-1].strip()] for r in rows}, _videos(root, videos))


def read_ucf101(root, split: str = "test", fold: int = 1, videos=None) -> LabelledSet:
    """UCF-101 (``ucf101-split{fold}``): ``classInd.txt`` (``"<1-based index> <ClassName>"``),
    ``trainlist0{fold}.txt`` (``"<Class>/<video>.avi <label>"``) or ``testlist0{fold}.txt``
    (``"<Class>/<video>.avi"``, the label is the folder's class). Videos at those relative paths."""
    classes = {}
    for line in find_file(root, "classInd.txt").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            idx, name = line.split()
            classes[name] = int(idx) - 1
    names = sorted(classes, key=classes.get)
    listing = find_file(root, f"{'train' if split == 'train' else 'test'}list0{fold}.txt")
    rels = [ln.split()[0] for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
    index = _videos(root, videos)
    return LabelledSet(f"ucf101-split{fold}", rels, [index.find(r) for r in rels],
                       [classes[r.split("/")[0]] for r in rels], names)


def read_hmdb51(root, split: str = "test", fold: int = 1, videos=None) -> LabelledSet:
    """HMDB-51 (``hmdb51-split{fold}``): ``testTrainMulti_7030_splits/<class>_test_split{fold}.txt``, lines
    ``"<video>.avi <0|1|2>"`` (1 = train, 2 = test, 0 = unused); classes are the file-name prefixes in sorted
    order. Videos ``<class>/<video>.avi``, found by name."""
    folder = find_file(root, "testTrainMulti_7030_splits")
    suffix = f"_test_split{fold}.txt"
    files = sorted(folder.glob(f"*{suffix}"))
    if not files:
        raise ConfigError(f"no *{suffix} files", source=str(folder))
    names = [f.name[: -len(suffix)] for f in files]
    want = "1" if split == "train" else "2"
    ids, labels = [], []
    for c, f in enumerate(files):
        for line in f.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == want:
                ids.append(parts[0])
                labels.append(c)
    index = _videos(root, videos)
    return LabelledSet(f"hmdb51-split{fold}", ids, [index.find(v) for v in ids], labels, names)


def read_kinetics400(root, split: str = "val", videos=None) -> LabelledSet:
    """Kinetics-400 (``k400-val`` / ``k400-train``): ``validate.csv`` or ``train.csv`` with the header
    ``label,youtube_id,time_start,time_end,split``; classes are the sorted labels of ``train.csv`` when
    present, else of the file read. Videos ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (or
    ``<youtube_id>.<ext>``)."""
    path = find_file(root, "train.csv" if split == "train" else "validate.csv")
    rows = _read_csv(path)
    try:
        class_rows = _read_csv(find_file(root, "train.csv"))
    except ConfigError:
        class_rows = rows
    names = sorted({r["label"] for r in class_rows})
    index = _videos(root, videos)
    ids, paths = [], []
    for r in rows:
        stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        ids.append(stem)
        paths.append(index.by_stem.get(stem) or index.find(r["youtube_id"]))
    lookup = {n: i for i, n in enumerate(names)}
    return LabelledSet(f"k400-{'train' if split == 'train' else 'val'}", ids, paths, [lookup[r["label"]] for r in rows], names)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"label", "youtube_id", "time_start", "time_end"} <= set(rows[0]):
        raise ConfigError("expected the header label,youtube_id,time_start,time_end,split", source=str(path))
    return rows


def read_ssv2(root, split: str = "val", videos=None) -> LabelledSet:
    """Something-Something v2 (``ssv2-val`` / ``ssv2-train``): ``labels.json`` (``{template: "index"}``) and
    ``validation.json`` or ``train.json`` (a list of ``{"id", "label", "template", "placeholders"}``); the
    class is ``labels[template without brackets]``, the description is ``label`` (the template with its
    objects filled in). Videos ``<id>.webm``."""
    labels = json.loads(find_file(root, "labels.json").read_text(encoding="utf-8"))
    rows = json.loads(find_file(root, "train.json" if split == "train" else "validation.json").read_text(encoding="utf-8"))
    names = sorted(labels, key=lambda t: int(labels[t]))
    index = _videos(root, videos)
    ids = [str(r["id"]) for r in rows]
    return LabelledSet(f"ssv2-{'train' if split == 'train' else 'val'}", ids, [index.find(v) for v in ids],
                       [int(labels[r["template"].replace("[", "").replace("]", "")]) for r in rows], names,
                       [r["label"] for r in rows])


# SVO-Probes. Facts taken from the public release (github.com/google-deepmind/svo_probes: its README and the
# analysis Colab; the CSV itself is not in the repository, it is downloaded from a storage bucket): the file is
# ``svo_probes.csv``, one row per sentence, columns ``sentence``, ``pos_image_id`` / ``neg_image_id`` (integer ids,
# formatted with ``%d``), ``pos_url`` / ``neg_url``, ``pos_triplet`` / ``neg_triplet`` (the subject-verb-object
# triplet seen in each image) and the booleans ``subj_neg``, ``verb_neg``, ``obj_neg`` (written by pandas:
# ``True`` / ``False``) saying what the negative image changes; the Colab keeps the rows where exactly one of
# the three is true. Images are not distributed (only their URLs), so they are read from a local folder.
SVO_CSV = "svo_probes.csv"
SVO_RELEASE_CONCEPTS = ("subj", "verb", "obj")
_SVO_REQUIRED = ("sentence", "pos_image_id", "neg_image_id")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


@dataclass
class SvoProbeSet:
    """SVO-Probes rows: ``sentences[i]`` with positive image ``pos_ids[i]`` and negative ``neg_ids[i]``, which
    differs from the positive in concept ``concepts[concept[i]]`` (the ``<concept>_neg`` column that is true);
    ``rows[i]``: its 1-based data row in ``csv_path`` (the header is row 0). ``images``: image id -> file for the
    ids found. ``missing``: ``{"image_id", "row", "field", "num_rows"}`` per image id that has no file (first
    row and column naming it, rows using it); ``malformed``: ``{"row", "field", "detail"}`` per row left out."""

    name: str
    csv_path: str
    concepts: list[str]
    sentences: list[str]
    pos_ids: list[str]
    neg_ids: list[str]
    concept: list[int]
    rows: list[int]
    images: dict[str, str]
    missing: list[dict] = field(default_factory=list)
    malformed: list[dict] = field(default_factory=list)
    num_rows: int = 0
    _first: dict = field(default_factory=dict, repr=False, compare=False)

    def first_use(self, image_id: str) -> tuple[int, str]:
        """(row, column) of the first row naming ``image_id`` (a ``KeyError`` for an id no row names)."""
        if not self._first:  # built on the first call, once the rows are read
            for r, p, n in zip(self.rows, self.pos_ids, self.neg_ids):
                self._first.setdefault(p, (r, "pos_image_id"))
                self._first.setdefault(n, (r, "neg_image_id"))
        return self._first[image_id]


def _svo_bool(value) -> bool | None:
    v = (value or "").strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def read_svo_probes(root, images=None) -> SvoProbeSet:
    """SVO-Probes (``svo-probes``): ``svo_probes.csv`` as released (see the comment above for the columns)
    and a folder of the images named by id (``<id>.jpg``, ``.png``, ...; default ``root/images``, searched
    recursively; an image is found by its file name without extension).

    Concepts are the columns ``<concept>_neg`` of the header (the release: ``subj``, ``verb``, ``obj``; the
    embedded probe of :mod:`tvts.data.svo_probe`: ``shape``, ``colour``); a dataset with other concepts than the
    release's is named ``svo-probes-<concept>-...``. A row is malformed (listed in ``malformed``, left out)
    when a field is missing or empty, or a ``_neg`` field is not a boolean, or not exactly one is true.
    A missing column, or no row left, is a :class:`ConfigError`. Image ids that have no file are listed in
    ``missing``; their rows stay (the protocol leaves out the rows it cannot score)."""
    path = find_file(root, SVO_CSV)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h for h in (reader.fieldnames or []) if h]
        absent = [c for c in _SVO_REQUIRED if c not in header]
        concepts = [h[: -len("_neg")] for h in header if h.endswith("_neg") and len(h) > len("_neg")]
        if absent or not concepts:
            raise ConfigError(f"missing column(s) {absent or ['<concept>_neg']}: expected sentence, pos_image_id, "
                              f"neg_image_id and subj_neg, verb_neg, obj_neg (got {header})", field="header", source=str(path))
        raw = [(n, r) for n, r in enumerate(reader, 1)]
    out = SvoProbeSet("svo-probes" if set(concepts) <= set(SVO_RELEASE_CONCEPTS) else "-".join(["svo-probes", *concepts]),
                      str(path), concepts, [], [], [], [], [], {}, num_rows=len(raw))
    for n, r in raw:
        bad = _svo_row_problem(r, concepts)
        if bad:
            out.malformed.append({"row": n, "field": bad[0], "detail": bad[1]})
            continue
        flags = [_svo_bool(r[f"{c}_neg"]) for c in concepts]
        out.sentences.append(" ".join(r["sentence"].split()))
        out.pos_ids.append(r["pos_image_id"].strip())
        out.neg_ids.append(r["neg_image_id"].strip())
        out.concept.append(flags.index(True))
        out.rows.append(n)
    if not out.rows:
        first = out.malformed[0] if out.malformed else None
        raise ConfigError("no usable row" + (f" ({len(out.malformed)} malformed; row {first['row']}, {first['field']}: "
                                            f"{first['detail']})" if first else ""), source=str(path))
    index = VideoIndex(images if images else Path(root) / "images", IMAGE_EXTENSIONS)
    uses: dict[str, int] = {}
    for i in out.pos_ids + out.neg_ids:
        uses[i] = uses.get(i, 0) + 1
    for image_id in dict.fromkeys(out.pos_ids + out.neg_ids):  # first-seen order
        hit = index.by_stem.get(image_id)
        if hit:
            out.images[image_id] = hit
        else:
            row, col = out.first_use(image_id)
            out.missing.append({"image_id": image_id, "row": row, "field": col, "num_rows": uses[image_id]})
    return out


def _svo_row_problem(r: dict, concepts: list[str]) -> tuple[str, str] | None:
    """(field, why) of the first problem of a CSV row, or None."""
    if None in r:  # more fields than the header
        return "row", f"{len(r) - 1 + len(r[None])} fields, the header has {len(r) - 1}"
    needed = {*_SVO_REQUIRED, *(f"{c}_neg" for c in concepts)}
    for col in r:  # header order
        if col in needed and r[col] is None:
            return col, f"missing: the row has {sum(v is not None for v in r.values())} fields, the header {len(r)}"
    for col in _SVO_REQUIRED:
        if not r[col].strip():
            return col, "empty"
    flags = {c: _svo_bool(r[f"{c}_neg"]) for c in concepts}
    for c, v in flags.items():
        if v is None:
            return f"{c}_neg", f"{r[f'{c}_neg']!r} is not a boolean (True/False)"
    true = [f"{c}_neg" for c, v in flags.items() if v]
    if len(true) != 1:
        return ",".join(f"{c}_neg" for c in concepts), f"exactly one must be True, got {len(true)} ({', '.join(true) or 'none'})"
    return None


RETRIEVAL_READERS = {"msrvtt": read_msrvtt_1ka, "msrvtt-allcaps": read_msrvtt_full, "msvd": read_msvd,
                     "didemo": read_didemo, "lsmdc": read_lsmdc}
LABELLED_READERS = {"ucf101": read_ucf101, "hmdb51": read_hmdb51, "k400": read_kinetics400, "ssv2": read_ssv2}


def read_labelled(dataset: str, root, split: str, videos=None, fold: int = 1) -> LabelledSet:
    """Dispatch to the reader of ``dataset`` (a key of :data:`LABELLED_READERS`)."""
    if dataset not in LABELLED_READERS:
        raise ConfigError(f"unknown labelled dataset {dataset!r}; choose from {sorted(LABELLED_READERS)}")
    if dataset in ("ucf101", "hmdb51"):
        return LABELLED_READERS[dataset](root, split, fold, videos)
    return LABELLED_READERS[dataset](root, split, videos)


def readable_class_name(name: str) -> str:
    """A class name as words for a prompt: ``"ApplyEyeMakeup"`` → ``"apply eye makeup"``,
    ``"brush_hair"`` → ``"brush hair"``, ``"playing guitar"`` unchanged."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " "))
    return " ".join(words.lower().split())
