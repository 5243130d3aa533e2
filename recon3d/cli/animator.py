"""``recon3d train``, ``evaluate`` and ``animate``: the EmoFace animator (package ``emoface_model``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from emoface_model.run_files import CHECKPOINTS
from recon3d.cli.common import friendly_errors


def _checkpoint_option(command):
    return click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default="best", show_default=True,
                        help="best: the epoch best on validation (checkpoints/best.pt; the last one when the run "
                             "has none); last: where training stopped.")(command)


def _framing_option(command):
    return click.option("--framing", type=click.Choice(["face", "head"]), default="face", show_default=True,
                        help="face: the face around the mouth fills the picture (eyebrows to chin; the mouth about "
                             "a third of the width); head: the whole head and neck.")(command)


@click.command("train")
@click.argument("shards_dirs", metavar="SHARDS_DIR...", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: config.yaml, checkpoints/last.pt (and best.pt), metrics.csv, tensorboard/.")
@click.option("--model", "model_name", type=click.Choice(["emoface", "faceformer"]), default=None,
              help="emoface (default) or the faceformer baseline, trained the same way.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML training config; pipelines/emoface.yaml documents every key (its values are the defaults).")
@click.option("--epochs", type=int, default=None, help="Epochs (overrides the config).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Default: cpu.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
              help="fp32 (default) or bf16: the forward pass under bfloat16 autocast, weights kept in fp32 "
                   "(GPUs with bfloat16: A100, H100).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint (same step count).")
@click.option("--audio-encoder", type=click.Choice(["mel", "wav2vec2", "hubert"]), default=None,
              help="mel: log-mel encoder trained from scratch (default, offline). wav2vec2/hubert: a pretrained "
                   "model from a local folder (--audio-encoder-path; needs `pip install 'recon3d[speech]'`).")
@click.option("--audio-encoder-path", type=click.Path(path_type=Path), default=None,
              help="A wav2vec 2.0 / HuBERT folder as save_pretrained writes it (e.g. facebook/wav2vec2-base-960h "
                   "downloaded elsewhere); nothing is downloaded. The run records its fingerprint, and evaluate / "
                   "animate refuse when the folder later holds another model.")
@click.option("--audio-encoder-mode", type=click.Choice(["fine_tune", "frozen"]), default=None,
              help="fine_tune (default): the encoder's convolutional feature extractor frozen, its transformer "
                   "trained (as FaceFormer). frozen: not trained; its features are computed once per clip and "
                   "cached, so a step costs no encoder pass.")
@click.option("--flame-masks", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FLAME_masks.pkl for lip weighting and evaluation regions (default: beside the FLAME model "
                   "the shards were built with).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in total (a checkpoint is written).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="slurm: submit as a job (submitit) that checkpoints and resumes when requeued or preempted.")
@click.option("--partition", default=None, help="[slurm] partition.")
@click.option("--time", "time_min", type=int, default=600, show_default=True, help="[slurm] minutes.")
@click.option("--mem-gb", type=float, default=16.0, show_default=True, help="[slurm] memory.")
@click.option("--cpus-per-task", type=int, default=8, show_default=True, help="[slurm] CPUs.")
@click.option("--slurm-additional", multiple=True, metavar="KEY=VALUE", help="[slurm] other sbatch options, e.g. gres=gpu:1.")
@click.option("--no-wait", is_flag=True, help="[slurm] print the job id and return.")
@click.option("--progress/--no-progress", default=True)
@friendly_errors
def train_cmd(shards_dirs: tuple[Path, ...], run_dir: Path, model_name, config_path, epochs, device, precision, resume, audio_encoder,
              audio_encoder_path, audio_encoder_mode, flame_masks, max_steps, executor, partition, time_min, mem_gb, cpus_per_task,
              slurm_additional, no_wait, progress) -> None:
    """Train the EmoFace animator (or the FaceFormer baseline) on shards from build-dataset.

    One build folder, or several trained on as one (e.g. 3D-RAVDESS and 3D-MEAD: one emotion
    vocabulary, each build's own splits; RUN_DIR/clips.json names each clip's build under
    `datasets`, and evaluate reports each build apart). Windows of the train split (split by actor in the manifest) teach the model to map audio,
    emotion and intensity to vertex offsets from the speaker's template. Only clips with speech
    audio are used (never a video-only take), song takes per `data.include_song` (default off);
    RUN_DIR/clips.json lists each split's clips and every excluded clip with its reason. The share of ground-truth
    motion inputs falls from teacher forcing to scheduled sampling over epochs (self-growing).
    Checkpoints are written atomically every `checkpoint_every` steps and at each epoch's end;
    after a kill, --resume continues with the same step count. With validation clips, every
    `best_every` epochs the val clips are generated and scored, and the best epoch (`best_on`,
    default LVE + EVE) is kept as checkpoints/best.pt, which evaluate and animate use.

    \b
    Examples:
      recon3d train ~/data/3d-ravdess --out runs/emoface
      recon3d train ~/data/3d-ravdess --out runs/faceformer --model faceformer
      recon3d train ~/data/3d-ravdess ~/data/3d-mead --out runs/emoface-both
      recon3d train ~/data/3d-ravdess --out runs/emoface --executor slurm --partition gpu --slurm-additional gres=gpu:1
    """
    from emoface_model.config import TrainConfig

    config = TrainConfig.load(config_path)
    if model_name:
        config.model.model = model_name
    if epochs:
        config.optim.epochs = epochs
    if device:
        config.device = device
    if precision:
        config.precision = precision
    if audio_encoder:
        config.model.audio_encoder = audio_encoder
    if audio_encoder_path:
        config.model.audio_encoder_path = str(audio_encoder_path)
    if audio_encoder_mode:
        config.model.audio_encoder_mode = audio_encoder_mode
    if resume:
        from emoface_model.run import RunDir, check_audio_encoder

        check_audio_encoder(RunDir(run_dir))
    if config.model.audio_encoder != "mel":
        from emoface_model.audio import build_audio_encoder

        build_audio_encoder(config.model.audio_encoder, config.model.dim, config.model.audio_encoder_path,
                            config.model.audio_encoder_mode)
    if executor == "slurm":
        from emoface_model.jobs import submit_training
        from recon3d.cli.build_dataset import _parse_pairs
        from recon3d.pipeline.executors import SlurmExecutor
        from recon3d.pipeline.slurm import SlurmOptions

        SlurmExecutor().check()
        options = SlurmOptions(partition, time_min, mem_gb, cpus_per_task, 1, _parse_pairs(slurm_additional))
        job = submit_training(list(shards_dirs), run_dir, config, options, str(flame_masks) if flame_masks else None, max_steps)
        click.echo(f"submitted training job {job.job_id} (logs in {run_dir / 'slurm'})", err=True)
        if no_wait:
            click.echo(job.job_id)
            return
        summary = job.result()
    else:
        from emoface_model.train import train

        summary = train(list(shards_dirs), run_dir, config, resume=resume, masks=str(flame_masks) if flame_masks else None,
                        progress=progress, max_steps=max_steps)
    if summary.get("still_improving"):
        click.echo(f"the run stopped before it converged: its loss still fell {-100 * summary['loss_trend_last_fifth']:.0f} % "
                   f"over the last fifth of its {summary['steps']} steps. Train longer: --resume with a larger --epochs "
                   "(a small dataset has few steps per epoch)", err=True)
    click.echo(json.dumps(summary))


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--split", default="test", show_default=True,
              help="train, val or test: the run's lists in RUN_DIR/clips.json (clips with speech audio only).")
@click.option("--shards", "shards_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Evaluate on another built dataset (default: the one the run was trained on).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@_checkpoint_option
@friendly_errors
def evaluate_cmd(run_dir: Path, split: str, shards_dir: Path | None, as_json: bool, device: str, checkpoint: str) -> None:
    """Lip vertex error (LVE), eye-region error (EVE), upper-face dynamics deviation (FDD), MVE.

    Whole clips of the split are generated autoregressively from their audio, emotion and
    intensity and compared with the dataset's meshes: overall, per emotion, per build (a run
    trained on several), and beside the template-only (no motion) baseline. Units: metres, so LVE/EVE/FDD are in m^2 (docs/metrics.md).
    The clips are the run's own lists (RUN_DIR/clips.json, written by train); on another dataset
    (--shards) they are chosen by the same rules (speech audio only; song per data.include_song).
    """
    from emoface_model.config import TrainConfig
    from emoface_model.infer import evaluate_run
    from emoface_model.run import RunDir, evaluation_clips, load_model, load_regions, run_shards

    run = RunDir(run_dir)
    model, state = load_model(run_dir, device, checkpoint)
    shards = shards_dir or run_shards(json.loads(run.info.read_text()))
    clips = evaluation_clips(run, TrainConfig.from_dict(state["config"]), shards_dir)
    result = evaluate_run(model, state["actors"], shards, split, load_regions(run), device, progress=not as_json,
                          clips=clips)
    result["model"] = state["config"]["model"]["model"]
    result["steps"] = state["step"]
    result["checkpoint"], result["epoch"] = state["checkpoint"], state["epoch"]
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['model']} after {result['steps']} steps ({result['checkpoint']}, {result['epoch']} epochs), "
               f"split '{split}' "
               f"({result['overall']['sequences']} clips, {result['overall']['frames']} frames); m^2 / m")
    click.echo(f"{'':16s} {'LVE':>10s} {'EVE':>10s} {'FDD':>10s} {'MVE':>10s}")
    rows = [("overall", result["overall"]), ("template only", result["template_only"])]
    rows += [(f"  {k}", v) for k, v in result["per_emotion"].items()]
    rows += [(f"{k}", v) for k, v in result.get("per_dataset", {}).items()]
    for name, r in rows:
        click.echo(f"{name:16s} {r['lve']:10.3e} {r['eve']:10.3e} {r['fdd']:10.3e} {r['mve']:10.3e}")
    opening = result["lip_opening"]
    show = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    click.echo(f"lip opening, animated against fitted (mean over clips): amplitude ratio "
               f"{show(opening['amplitude_ratio'])}, correlation {show(opening['correlation'])} "
               "(1 and 1: the mouth opens as much as the data, in step with it)")


@click.command("animate")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("audio", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--emotion", default="neutral", show_default=True,
              help="neutral, calm, happy, sad, angry, fearful, disgust, surprised (or 1-8).")
@click.option("--intensity", default="normal", show_default=True, help="normal or strong.")
@click.option("--actor", default=None, help="A training actor's identity and style (default: the first).")
@click.option("--template", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Any FLAME-topology neutral mesh (.ply/.obj) to animate instead of a training actor.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output stem: OUT.npy, OUT.mp4 (and OUT_meshes/ with --meshes).")
@click.option("--meshes", type=click.Choice(["obj", "ply"]), default=None, help="Also write one mesh file per frame.")
@click.option("--no-video", is_flag=True, help="Skip the rendered OUT.mp4.")
@click.option("--fps", type=float, default=30.0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@_checkpoint_option
@_framing_option
@friendly_errors
def animate_cmd(run_dir, audio, emotion, intensity, actor, template, out, meshes, no_video, fps, device,
                checkpoint, framing) -> None:
    """Animate a face from speech: AUDIO (wav or any audio file, any length and rate) -> meshes + video.

    \b
    Example:
      recon3d animate runs/emoface speech.wav --emotion happy --intensity strong --actor 05 --out happy
    """
    from emoface_model.animate import animate

    written = animate(run_dir, audio, out, emotion, intensity, actor, template, fps, meshes, not no_video, device,
                      checkpoint, framing)
    click.echo(json.dumps(written))


@click.command("compare")
@click.argument("dataset_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("clip_id")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The mp4 to write.")
@click.option("--names", default=None, help="Comma-separated panel names for the runs (default: their folders).")
@click.option("--size", type=int, default=360, show_default=True, help="Pixels per panel.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@_checkpoint_option
@_framing_option
@friendly_errors
def compare_cmd(dataset_dir: Path, clip_id: str, runs: tuple[Path, ...], out: Path, names: str | None, size: int,
                device: str, checkpoint: str, framing: str) -> None:
    """A dataset clip side by side with the animators' output for it: the fitted meshes | each RUN
    animating the clip's audio with its emotion, intensity and speaker, with the audio.

    \b
    Example (a held-out take, EmoFace against the baseline):
      recon3d compare out/actor05 01-01-06-02-02-02-05 runs/emoface runs/faceformer --names EmoFace,FaceFormer --out side.mp4
    """
    from emoface_model.animate import compare_clip

    written = compare_clip(dataset_dir, clip_id, list(runs), out, names.split(",") if names else None, size, device,
                           checkpoint, framing)
    click.echo(json.dumps(written))
