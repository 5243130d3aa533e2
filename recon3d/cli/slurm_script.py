"""``recon3d slurm-script``: print a filled sbatch script from pipelines/slurm/."""

from __future__ import annotations

import shlex
from importlib import resources
import shutil
import sys
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors
from recon3d.errors import SetupError



def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; every placeholder must be given."""
    out = template
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    if "{{" in out:
        missing = out[out.index("{{"):].split("}}")[0] + "}}"
        raise ValueError(f"template placeholder {missing} has no value")
    return out


def _extra(partition: str | None, additional: tuple[str, ...]) -> str:
    lines = [f"#SBATCH --partition={partition}"] if partition else []
    for pair in additional:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--slurm-additional")
        lines.append(f"#SBATCH --{key.strip().replace('_', '-')}={value.strip()}")
    return "\n".join(lines)


def _recon3d() -> str:
    """The recon3d command of this installation (its console script, else this Python with -m)."""
    script = shutil.which("recon3d")
    return shlex.quote(script) if script else f"{shlex.quote(sys.executable)} -m recon3d"


def _template(name: str) -> str:
    """A template of pipelines/slurm/, read from the installed package (``recon3d/data/pipelines``)."""
    path = resources.files("recon3d") / "data" / "pipelines" / "slurm" / name
    if not path.is_file():
        raise SetupError(f"{path}: template not found: this recon3d installation is incomplete; reinstall it")
    return path.read_text()


@click.group("slurm-script")
def slurm_script() -> None:
    """Print a filled sbatch script (pipelines/slurm/*.sbatch) for submitting by hand."""


@slurm_script.command("build")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--partition", default=None)
@click.option("--time", "time_min", type=int, default=60, show_default=True, help="Minutes per task.")
@click.option("--mem-gb", type=float, default=8.0, show_default=True)
@click.option("--cpus-per-task", type=int, default=4, show_default=True)
@click.option("--array-parallelism", type=int, default=32, show_default=True)
@click.option("--slurm-additional", multiple=True, metavar="KEY=VALUE", help="Any other sbatch option.")
@friendly_errors
def script_build(out_dir: Path, partition, time_min, mem_gb, cpus_per_task, array_parallelism, slurm_additional) -> None:
    """The array script for a planned build (plan with `build-dataset ... --plan-only`)."""
    from recon3d.pipeline.build import load_plan

    n = len(load_plan(out_dir).shards)
    click.echo(fill(_template("build-array.sbatch"), {
        "array": f"0-{n - 1}%{array_parallelism}", "time": str(time_min), "mem_gb": f"{mem_gb:g}",
        "cpus": str(cpus_per_task), "out_dir": shlex.quote(str(out_dir.resolve())),
        "extra": _extra(partition, slurm_additional), "recon3d": _recon3d()}), nl=False)


@slurm_script.command("train")
@click.argument("shards_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--partition", default=None)
@click.option("--time", "time_min", type=int, default=600, show_default=True, help="Minutes.")
@click.option("--mem-gb", type=float, default=16.0, show_default=True)
@click.option("--cpus-per-task", type=int, default=8, show_default=True)
@click.option("--slurm-additional", multiple=True, metavar="KEY=VALUE", help="Any other sbatch option, e.g. gres=gpu:1.")
@click.option("--train-args", default="", help="More `recon3d train` options, quoted, e.g. \"--model emoface --epochs 50\".")
@friendly_errors
def script_train(shards_dir: Path, run_dir: Path, partition, time_min, mem_gb, cpus_per_task, slurm_additional,
                 train_args: str) -> None:
    """The training script: resumable, requeued on preemption."""
    click.echo(fill(_template("train.sbatch"), {
        "time": str(time_min), "mem_gb": f"{mem_gb:g}", "cpus": str(cpus_per_task),
        "shards_dir": shlex.quote(str(shards_dir.resolve())), "run_dir": shlex.quote(str(run_dir.resolve())),
        "extra": _extra(partition, slurm_additional), "recon3d": _recon3d(), "train_args": train_args}), nl=False)
