"""The built wheel works outside the source tree: installed into a fresh virtual environment (no editable
install, no checkout on the path), `tvts config demo` finds the named configs shipped inside the package,
the search page's files are there, and a 3-step pretraining runs from an unrelated folder."""

import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, **kw):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    # Build from a copy of the sources: building in place would write build/ and *.egg-info into the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO / "tvts", src / "tvts", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, src], tmp_path)
    wheel = next(dist.glob("tvts-*.whl"))

    # A fresh environment: tvts from the wheel only; its dependencies from this interpreter's site-packages,
    # listed by a .pth file (paths only: the .pth files there, such as an editable install's, are not run).
    env = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", env], tmp_path)
    fresh_python = env / "bin" / "python"
    purelib = Path(_run([fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (purelib / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", fresh_python, "install", "--no-deps", "--no-index", "-q", wheel], tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([fresh_python, "-c", "import tvts; print(tvts.__file__)"], elsewhere).strip()
    assert Path(where).is_relative_to(env), where  # the installed copy, not the checkout
    tvts = env / "bin" / "tvts"
    shown = _run([tvts, "config", "demo"], elsewhere)
    assert "tvts_demo" in shown and "num_segments" in shown
    assert "tvtsv2_vitb16" in _run([tvts, "config", "tvtsv2_vitb16"], elsewhere)
    # the search page's files ship inside the package (tvts serve reads them with importlib.resources)
    shipped = _run([fresh_python, "-c", "from importlib import resources; s = resources.files('tvts.search') / 'static'; "
                    "print(sorted(p.name for p in s.iterdir()))"], elsewhere)
    assert "page.html" in shipped and "style.css" in shipped
    overrides = ["data.synthetic.out=shapes", "data.synthetic.num_train=12", "data.synthetic.num_val=2",
                 "data.synthetic.num_heldout=8", "data.text_features=false", "data.frame_store=false", "data.cache_dir=cache",
                 "train.steps=3", "train.batch_size=4", "train.ckpt_every=3", "train.out_dir=run", "train.progress=false",
                 "train.time_limit_minutes=0"]
    _run([tvts, "pretrain", "--config", "demo", *overrides], elsewhere)
    assert (elsewhere / "run" / "model" / "model.safetensors").is_file()
    assert (elsewhere / "run" / "checkpoints" / "latest").read_text().strip() == "step_00000003"
