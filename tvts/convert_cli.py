"""``tvts convert``: a published checkpoint (local file) → a tvts model folder.

Wired into ``tvts.cli`` with :func:`add_convert_parser`.
"""

from __future__ import annotations

import argparse

from tvts.data.choices import PRESETS

# The choices of tvts.models.convert (SOURCES, TVTSV2_SIZES), spelled out so that building the parser
# imports no torch (tests check they agree).
SOURCES = ("openai-clip", "open-clip", "tvtsv2", "tvts-v1")
SIZES = ("b32", "b16", "h14")
# The video preprocessing saved with each kind of converted model: the released code's own evaluation pipeline
# (tvts.data.choices.PRESETS); --preset picks another (e.g. tvtsv2-extract, the feature-extraction script's).
RELEASE_PRESETS = {"openai-clip": "tvtsv2-eval", "open-clip": "tvtsv2-eval", "tvtsv2": "tvtsv2-eval", "tvts-v1": "tvts-eval"}

DESCRIPTION = """\
Turn a published checkpoint into a tvts model folder (model.safetensors + config.json +
preprocessor.json), which 'tvts extract', 'tvts eval' and train.init_from read. Nothing is downloaded:
SRC is a local file. preprocessor.json records the released code's own evaluation preprocessing
(tvtsv2-eval / tvts-eval; --preset tvtsv2-extract for the TVTSv2 feature-extraction script's).

  --from openai-clip  an OpenAI CLIP ViT file (ViT-B-32.pt, ViT-B-16.pt; TorchScript or state dict)
  --from open-clip    an OpenCLIP ViT checkpoint (ViT-H-14 open_clip_pytorch_model.bin / .safetensors)
                      These two give a TVTSv2 model whose video encoder is the CLIP image encoder
                      (new parts at their initialisation), to pretrain from (train.init_from).
  --from tvtsv2       a released TVTSv2 checkpoint (TVTSv2_ViT_B_32.pth, _B_16.pth, _H_14.pth)
  --from tvts-v1      a released TVTS checkpoint; needs --text-model, a local distilbert-base-uncased
                      folder (tokenizer + config.json)

Files are read without running code from them (a pickle can run any code when it is loaded): pickles
through torch's tensors-only loader, where other pickled objects (such as the training config inside
released checkpoints) become inert placeholders, and TorchScript archives without their code.
--unsafe loads with full unpickling / torch.jit.load instead, which runs whatever the file asks for:
use it only for files you trust, and only if the safe reading fails.
"""


def cmd_convert(args: argparse.Namespace) -> int:
    from tvts.data.processor import VideoProcessor
    from tvts.models.convert import convert_checkpoint

    from tqdm.auto import tqdm

    preset = args.preset or RELEASE_PRESETS[args.source]
    with tqdm(total=2, desc="convert", unit="stage", disable=not args.progress, leave=False) as bar:
        bar.set_postfix_str(f"reading and mapping {args.src}")
        model, conversion = convert_checkpoint(args.source, args.src, size=args.size, unsafe=args.unsafe,
                                               text_model=args.text_model, config=args.config)
        bar.update(1)
        bar.set_postfix_str(f"writing {args.out_dir}")
        cfg = model.config
        processor = VideoProcessor.from_preset(preset, cfg.video.num_frames, cfg.video.img_size)
        model.save_pretrained(args.out_dir, preprocessor=processor.to_dict())
        bar.update(1)
    print(f"[tvts] {args.src} -> {args.out_dir} ({cfg.family}, {cfg.name}): {len(conversion.state)} tensors converted; "
          f"preprocessing: {preset}")
    if conversion.fresh:
        print(f"[tvts] {len(conversion.fresh)} tensors not in the checkpoint keep their initialisation: "
              f"{_summary(conversion.fresh)}")
    if conversion.ignored:
        print(f"[tvts] {len(conversion.ignored)} checkpoint entries are not weights and were dropped: {_summary(conversion.ignored)}")
    return 0


def _summary(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``convert`` sub-command to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    sp = subparsers.add_parser("convert", help="turn a published checkpoint into a tvts model folder",
                               description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the checkpoint's layout")
    sp.add_argument("--size", default="", choices=SIZES,
                    help="TVTSv2 size (default: read from the checkpoint's patch embedding)")
    sp.add_argument("--unsafe", action="store_true",
                    help="full unpickling / torch.jit.load: can run code stored in the file; only for trusted files")
    sp.add_argument("--config", default="",
                    help="model config (name in tvts/configs/models or a YAML path) to convert into, instead of the published size's")
    sp.add_argument("--text-model", default="", help="tvts-v1 only: a local DistilBERT folder (tokenizer + config.json)")
    sp.add_argument("--preset", default=None, choices=tuple(PRESETS),
                    help="the video preprocessing to save with the model (default: the released code's evaluation "
                         "pipeline: " + ", ".join(f"{k} -> {v}" for k, v in RELEASE_PRESETS.items()) + ")")
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sp.add_argument("src", help="the checkpoint file")
    sp.add_argument("out_dir", help="the model folder to write (replaced if it exists)")
    sp.set_defaults(func=cmd_convert)
    return sp
