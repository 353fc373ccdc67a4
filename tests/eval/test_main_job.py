"""The main job's held-out protocols: one encoding of the clips, every protocol, the table and the figure."""

from tvts.data.processor import VideoProcessor
from tvts.eval.main_job import heldout_protocols
from tvts.eval.protocols import Encoder
from tvts.eval.report import results_table
from tvts.models import load_model


def test_heldout_protocols_share_one_encoding(eval_data, tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir).eval()
    encode, seen = model.encode_video, []
    model.encode_video = lambda frames: seen.append(len(frames)) or encode(frames)
    enc = Encoder(model, str(tiny_model_dir), VideoProcessor(num_frames=4, size=16), batch_size=8, cache_dir=tmp_path / "cache",
                  progress=False)
    res = heldout_protocols(enc, eval_data["heldout"], tmp_path)
    assert sum(seen) == 16  # every clip once
    assert set(res) == {"retrieval", "recognition", "linear_probe", "knn", "multiple_choice", "direction", "v2v"}
    d = res["direction"]
    assert d["num_videos"] == 8 and d["chance_top1"] == 50.0 and d["top1"] in {100.0 * k / 8 for k in range(9)}
    mc = res["multiple_choice"]
    assert mc["num_videos"] == 8 and mc["num_candidates"] == 8 and 0 <= mc["top1"] <= mc["top5"] <= 100
    assert res["retrieval"]["num_queries"] == res["retrieval"]["num_videos"] == 8
    for key in ("recognition", "linear_probe", "knn"):
        r = res[key]
        assert r["num_videos"] == 8 and r["num_classes"] == 8 and 0 <= r["top1"] <= r["top5"] <= 100
        assert sum(map(sum, r["confusion"])) == 8 and r["classes"][0] == "MoveLeft"
    assert res["linear_probe"]["num_train"] == 8 and res["knn"]["k"] == 8
    assert res["v2v"]["num_queries"] == 16 and res["v2v"]["num_videos"] == 16
    assert (tmp_path / "confusion_linear_probe.png").stat().st_size > 1000
    table = results_table(res)
    assert "linear probe" in table and "kNN (k=8)" in table and "Video-to-video" in table and "Multiple choice" in table
    assert "Direction test" in table
    seen.clear()
    again = heldout_protocols(enc, eval_data["heldout"], None)  # features cached in cache_dir: nothing re-encoded
    assert seen == [] and again["knn"] == res["knn"]
