"""Results of the main job: a printed table, ``results.json`` and a PNG of the training curves."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvts.errors import ConfigError

RESULTS_VERSION = 1


def results_table(results: dict) -> str:
    """A plain-text table of the headline numbers of ``results.json``."""
    lines = []
    s = results.get("sort")
    if s:
        lines += [
            f"Transcript sorting on {s['num_videos']} held-out videos (K={s['K']})",
            f"  {'input':<16}{'segment acc':>12}{'order acc':>12}",
            f"  {'text + video':<16}{s['text_video']['segment_acc']:>12.3f}{s['text_video']['order_acc']:>12.3f}",
            f"  {'text only':<16}{s['text_only']['segment_acc']:>12.3f}{s['text_only']['order_acc']:>12.3f}",
            f"  {'chance':<16}{s['chance_segment_acc']:>12.3f}{s['chance_order_acc']:>12.3f}",
        ]
    r = results.get("retrieval")
    if r:
        lines += [
            f"Zero-shot retrieval: {r['num_queries']} captions x {r['num_videos']} held-out clips",
            f"  {'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}",
            *(f"  {name:<16}{r[p + 'R@1']:>8.1f}{r[p + 'R@5']:>8.1f}{r[p + 'R@10']:>8.1f}{r[p + 'MedR']:>8.1f}"
              for name, p in (("text->video", "t2v_"), ("video->text", "v2t_"))),
            f"  {'chance R@1':<16}{r['chance_R@1']:>8.1f}",
        ]
    lines += _heldout_lines(results)
    tm = results.get("timing")
    if tm:
        lines.append("Time: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in tm.items()))
    return "\n".join(lines)


def _heldout_lines(results: dict) -> list[str]:
    """Zero-shot recognition, linear probe, kNN, multiple choice and v2v retrieval on the held-out clips."""
    rows = [(label, results[key]) for key, label in (("recognition", "zero-shot prompts"), ("linear_probe", "linear probe"),
                                                     ("knn", f"kNN (k={results.get('knn', {}).get('k')})")) if key in results]
    lines = []
    if rows:
        lines += [f"Action recognition on {rows[0][1]['dataset']}",
                  f"  {'method':<20}{'top-1':>8}{'top-5':>8}",
                  *(f"  {label:<20}{r['top1']:>8.1f}{r['top5']:>8.1f}" for label, r in rows),
                  f"  {'chance':<20}{rows[0][1]['chance_top1']:>8.1f}"]
    mc = results.get("multiple_choice")
    if mc:
        lines += [f"Multiple choice (SSV2-MC style): the true caption among {mc['num_candidates']} for {mc['num_videos']} clips",
                  f"  top-1 {mc['top1']:.1f}   chance {mc['chance_top1']:.1f}"]
    d = results.get("direction")
    if d:
        lines += [f"Direction test: the caption against its reversed twin (left/right, up/down, grows/shrinks, turns) for "
                  f"{d['num_videos']} clips", f"  top-1 {d['top1']:.1f}   chance {d['chance_top1']:.1f}"]
    v = results.get("v2v")
    if v:
        lines += [f"Video-to-video retrieval by class: {v['num_queries']} held-out clips query all the others",
                  f"  {'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}",
                  f"  {v['R@1']:>8.1f}{v['R@5']:>8.1f}{v['R@10']:>8.1f}{v['MedR']:>8.1f}"]
    return lines


def markdown_report(results: dict[str, dict]) -> str:
    """Markdown tables of ``tvts eval`` results (``{"<dataset version>/<protocol>": metrics}``), one table per
    kind: retrieval, classification, video-to-video retrieval, transcript sorting, SVO-Probes."""
    kinds = [
        ("Text-video retrieval (R@k in %, ranks 1-based)",
         ["t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "t2v_MeanR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MedR", "v2t_MeanR", "num_queries", "num_videos"],
         lambda r: "t2v_R@1" in r),
        ("Classification (accuracy in %)", ["top1", "top5", "num_videos", "num_classes", "chance_top1"], lambda r: "top1" in r),
        ("Video-to-video retrieval by class (R@k in %)", ["R@1", "R@5", "R@10", "MedR", "MeanR", "num_queries"], lambda r: "R@1" in r),
    ]
    out = []
    for title, cols, match in kinds:
        names = [n for n, r in results.items() if match(r)]
        if names:
            out += [f"### {title}", "", "| result | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            out += ["| " + n + " | " + " | ".join(_fmt(results[n].get(c)) for c in cols) + " |" for n in names]
            out.append("")
    sort = [n for n, r in results.items() if "text_video" in r]
    if sort:
        out += ["### Transcript sorting", "", "| result | T+V segment | T+V order | T segment | T order | chance order |",
                "|---|---|---|---|---|---|"]
        out += [f"| {n} | {_fmt(r['text_video']['segment_acc'])} | {_fmt(r['text_video']['order_acc'])} | "
                f"{_fmt(r['text_only']['segment_acc'])} | {_fmt(r['text_only']['order_acc'])} | {_fmt(r['chance_order_acc'])} |"
                for n, r in ((n, results[n]) for n in sort)]
        out.append("")
    svo = [n for n, r in results.items() if "pairwise_acc" in r and "concepts" in r]
    if svo:
        keys = list(dict.fromkeys(f"P@{t:g}" for n in svo for t in results[n].get("thresholds", [])))
        out += ["### SVO-Probes (in %: pairwise accuracy, precision of cos > rho; chance 50)", "",
                "| result | concept | pairwise acc | " + " | ".join(keys) + " | pairs | missing images | unreadable | malformed rows |",
                "|---" * (len(keys) + 7) + "|"]
        for n in svo:
            r = results[n]
            for concept, m in [("all", r), *r["concepts"].items()]:
                counts = [r["num_missing"], r["num_failed"], r["num_malformed"]] if concept == "all" else ["", "", ""]
                out.append(f"| {n} | {concept} | {_fmt(m['pairwise_acc'])} | " + " | ".join(_fmt(m.get(k)) for k in keys)
                           + f" | {m['num_pairs']} | " + " | ".join(str(c) for c in counts) + " |")
        out.append("")
    return "\n".join(out)


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def merge_report(out_json: str | Path, report: dict) -> dict:
    """``report`` added to the one already at ``out_json`` (same model): its protocols' results and settings
    replace those of the same name, the others stay, so ``tvts eval`` protocols run one after the other
    build one report. A report of another model there is an error (use another ``--out``)."""
    path = Path(out_json)
    if not path.is_file():
        return report
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the existing report ({e}); move it away or use another --out", source=str(path)) from None
    if old.get("model") != report.get("model"):
        raise ConfigError(f"holds the results of model {old.get('model')!r}, not {report.get('model')!r}: use another "
                          "--out (a report is about one model)", source=str(path))
    return {**report, "results": {**old.get("results", {}), **report["results"]},
            "settings": {**old.get("settings", {}), **report.get("settings", {})},
            "seconds": round(float(old.get("seconds", 0)) + float(report.get("seconds", 0)), 1)}


def write_report(out_json: str | Path, report: dict) -> tuple[Path, Path]:
    """``report`` (``{"model", "results": {name: metrics}, ...}``) as JSON at ``out_json`` and as markdown
    beside it (same name, ``.md``), each written beside and renamed into place."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_json, json.dumps({"version": RESULTS_VERSION, **report}, indent=2))
    md = out_json.with_suffix(".md")
    _write_atomic(md, f"# Evaluation of {report.get('model', '')}\n\n" + markdown_report(report["results"]))
    return out_json, md


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(run_dir: str | Path, results: dict) -> Path:
    path = Path(run_dir) / "results.json"
    path.write_text(json.dumps({"version": RESULTS_VERSION, **results}, indent=2))
    return path
