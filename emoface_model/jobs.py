"""Training as a SLURM job (submitit) that checkpoints and resumes when requeued or preempted."""

from __future__ import annotations

from pathlib import Path

from emoface_model.config import TrainConfig


class TrainTask:
    """The job's callable. Every start resumes from the run's last checkpoint if there is one, so
    a requeued, preempted or resubmitted job continues the same run (same step count)."""

    def __call__(self, shards_dir: str | list[str], run_dir: str, config: dict, masks: str | None, max_steps: int | None) -> dict:
        from emoface_model.run import RunDir
        from emoface_model.train import train

        resume = RunDir(Path(run_dir)).checkpoint.exists()
        return train(shards_dir, run_dir, TrainConfig.from_dict(config), resume=resume, masks=masks,
                     progress=False, max_steps=max_steps)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on time-out or preemption: requeue the same call (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit_training(shards_dirs: list[Path], run_dir: Path, config: TrainConfig, options, masks: str | None,
                    max_steps: int | None):
    """Submit one training job on one build folder or several (``options``: :class:`recon3d.pipeline.slurm.SlurmOptions`); its
    submitit logs go to ``RUN_DIR/slurm``."""
    from recon3d.pipeline.slurm import slurm_executor

    run_dir.mkdir(parents=True, exist_ok=True)
    executor = slurm_executor(run_dir / "slurm", options, "recon3d-train", array=False)
    return executor.submit(TrainTask(), [str(p.resolve()) for p in shards_dirs], str(run_dir.resolve()),
                           config.to_dict(), masks, max_steps)
