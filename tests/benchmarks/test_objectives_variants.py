"""benchmarks/objectives.py: every variant is a valid recipe, and the ones taken apart change what they say."""

from __future__ import annotations

import pytest

from tvts.config import load_recipe


@pytest.fixture(scope="module")
def objectives(load_benchmark):
    return load_benchmark("objectives")


def test_every_variant_loads_as_a_valid_recipe(objectives, tmp_path):
    assert set(objectives.DEFAULT) <= set(objectives.VARIANTS)
    for name in objectives.VARIANTS:  # raises ConfigError naming the field
        load_recipe("demo", objectives.recipe_overrides(name, 0, 2100, tmp_path / name))


def test_taken_apart_variants_change_what_they_name(objectives, tmp_path):
    def recipe(name):
        return load_recipe("demo", objectives.recipe_overrides(name, 0, 2100, tmp_path / name))

    base = recipe("svilm_transcript_groups")
    for name, assign in (("svilm_transcript_groups_argmax", "argmax"), ("svilm_transcript_groups_soft", "soft")):
        r = recipe(name)
        assert (base.model.video.group_assign, r.model.video.group_assign) == ("gumbel", assign)
    assert recipe("svilm_transcript_groups_last").model.video.group_layers == [4]
    attend = recipe("svilm_transcript_groups_attend")
    assert (base.model.video.group_self_attention, attend.model.video.group_self_attention) == (False, True)
    plain, softmax = recipe("cpd_plain_head"), recipe("cpd_softmax_plain_head")
    assert (plain.objective.cpd.estimator, softmax.objective.cpd.estimator) == ("nce", "softmax")
    assert recipe("cpd_softmax_all_noise").objective.cpd.num_noise == 2399
    assert recipe("contrastive_warm").objective.temperature == 10 * recipe("contrastive").objective.temperature


def _flat(d, prefix=""):
    import dataclasses

    out = {}
    for k, v in (dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("name, base, changed", [
    ("svilm_attend_plus_captions", "svilm_transcript_groups_attend", {"objective.clip_text"}),
    ("svilm_attend_plus_tau", "svilm_transcript_groups_attend", {"objective.svilm.temperature"}),
    ("svilm_attend_plus_cut", "svilm_transcript_groups_attend", {"objective.svilm.cut_and_paste"}),
    ("svilm_attend_plus_grouping", "svilm_transcript_groups_attend",
     {"objective.svilm.cut_and_paste", "objective.svilm.grouping_weight"}),
    ("svilm_attend_plus_grounding", "svilm_transcript_groups_attend", {"objective.svilm.grounding_weight"}),
    ("svilm_attend_less_captions", "svilm_attend", {"objective.clip_text"}),
    ("svilm_attend_less_tau", "svilm_attend", {"objective.svilm.temperature"}),
    ("svilm_attend_less_cut", "svilm_attend", {"objective.svilm.cut_and_paste"}),
    ("svilm_attend_less_grouping", "svilm_attend", {"objective.svilm.grouping_weight"}),
    ("svilm_attend_less_grounding", "svilm_attend", {"objective.svilm.grounding_weight"}),
    ("cpd_200", "cpd", {"data.max_videos"}),
    ("contrastive_200", "contrastive", {"data.max_videos"}),
])
def test_one_step_variants_change_exactly_what_they_name(objectives, tmp_path, name, base, changed):
    """S-ViLM taken apart one change at a time: each row differs from its base recipe in the named fields only
    (the run folder aside)."""
    a = _flat(load_recipe("demo", objectives.recipe_overrides(base, 0, 2100, tmp_path / "run")))
    b = _flat(load_recipe("demo", objectives.recipe_overrides(name, 0, 2100, tmp_path / "run")))
    assert {k for k in a if a[k] != b[k]} == changed


def test_the_chance_row_shows_only_the_columns_some_row_fills(objectives):
    """A table of variants without a sort head has no sort column, so no sort chance level either."""
    def run(variant, lp):
        return {"variant": variant, "pretrain_s": 60.0, "linear_probe": {"top1": lp, "chance_top1": 12.5},
                "sort": {"chance_segment_acc": 0.25}}

    runs = {"contrastive": [run("contrastive", 40.0), run("contrastive", 50.0)], "cpd": [run("cpd", 10.0)]}
    table = objectives.summarise(runs)
    assert table["contrastive"]["linear probe"][:2] == (45.0, pytest.approx(7.0711, abs=1e-3))
    md = objectives.markdown(table, objectives.chance_row(runs), 100, [0, 1], "cmd")
    chance = next(line for line in md.splitlines() if line.startswith("| chance"))
    cells = [c.strip() for c in chance.strip("|").split("|")]
    cols = [m[0] for m in objectives.METRICS]
    assert cells[1 + cols.index("linear probe")] == "12.5" and cells[1 + cols.index("sort acc. (T+V)")] == "–"
    assert "(-35.0)" in md  # cpd's difference to the baseline's mean


def test_parallel_runs_each_job_once_at_most_n_at_a_time_and_leaves_failures_out(objectives, tmp_path, monkeypatch):
    """--parallel: every (variant, seed) not yet cached runs once as its own process, never more than N at once,
    in seed-major order; a run that fails is named, left out of the table, and makes the exit status 1."""
    import json
    import sys

    from tvts.data.synthetic import VERSION

    out, steps = tmp_path / "runs", 50
    launched, live, most = [], set(), [0]

    class FakeRun:
        """Stands in for one child process: 'finishes' on its second poll, writing what run_one would."""
        def __init__(self, cmd, stdout=None, stderr=None):
            args = dict(zip(cmd[2::2], cmd[3::2]))
            self.job = (cmd[cmd.index("--variants") + 1], int(cmd[cmd.index("--seeds") + 1]))
            assert cmd[0] == sys.executable and cmd[1].endswith("objectives.py")  # this interpreter, this script
            assert args["--steps"] == str(steps) and args["--threads"] == "1"
            launched.append(self.job)
            live.add(self.job)
            most[0] = max(most[0], len(live))
            self.polls, self.returncode = 0, None

        def poll(self):
            self.polls += 1
            if self.polls < 2:
                return None
            live.discard(self.job)
            variant, seed = self.job
            if variant == "cpd" and seed == 1:
                self.returncode = 3
                return 3
            run_dir = out / variant / f"seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            res = {"variant": variant, "seed": seed, "pretrain_s": 1.0, "data_version": VERSION,
                   "overrides": objectives.recipe_overrides(variant, seed, steps, run_dir, 1),
                   "retrieval": {"t2v_R@1": 1.0 + seed, "chance_R@1": 0.6},
                   "linear_probe": {"top1": 20.0 + seed, "chance_top1": 12.5}}
            (run_dir / "results.json").write_text(json.dumps(res))
            self.returncode = 0
            return 0

    # contrastive seed 0 is already cached: it must not run again
    cached_dir = out / "contrastive" / "seed0"
    cached_dir.mkdir(parents=True)
    (cached_dir / "results.json").write_text(json.dumps({
        "variant": "contrastive", "seed": 0, "pretrain_s": 1.0, "data_version": VERSION,
        "overrides": objectives.recipe_overrides("contrastive", 0, steps, cached_dir, 1),
        "retrieval": {"t2v_R@1": 9.0, "chance_R@1": 0.6}, "linear_probe": {"top1": 30.0, "chance_top1": 12.5}}))
    prepared = []
    monkeypatch.setattr(objectives, "prepare_caches", lambda variant, *a: prepared.append(variant))
    real = objectives.run_parallel
    monkeypatch.setattr(objectives, "run_parallel", lambda jobs, args: real(jobs, args, launch=FakeRun, poll_s=0))
    monkeypatch.setattr(objectives, "plot", lambda *a: None)
    code = objectives.main(["--variants", "contrastive", "cpd", "tvts", "--seeds", "0", "1", "--steps", str(steps),
                            "--out", str(out), "--report", str(tmp_path / "rep"), "--parallel", "2"])
    assert launched == [("cpd", 0), ("tvts", 0), ("contrastive", 1), ("cpd", 1), ("tvts", 1)]
    assert most[0] == 2 and prepared == ["cpd"]
    assert code == 1
    table = json.loads((tmp_path / "rep.json").read_text())["runs"]
    assert [r["seed"] for r in table["cpd"]] == [0] and [r["seed"] for r in table["contrastive"]] == [0, 1]
    assert "--parallel 2" in (tmp_path / "rep.md").read_text()
