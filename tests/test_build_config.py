"""The documented build configuration equals the built-in defaults, and bad configs say why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recon3d.config_io import ConfigError
from recon3d.pipeline.config import BuildConfig

REPO = Path(__file__).resolve().parents[1]


def test_ravdess_yaml_documents_the_defaults():
    assert BuildConfig.load(REPO / "pipelines" / "ravdess.yaml").to_dict() == BuildConfig().to_dict()


def test_every_default_is_in_the_yaml():
    documented = yaml.safe_load((REPO / "pipelines" / "ravdess.yaml").read_text())
    for section, values in BuildConfig().to_dict().items():
        if isinstance(values, dict):
            assert set(values) == set(documented[section]), section


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fitting:\n  smoth_expr: 2\n")
    with pytest.raises(ConfigError, match="unknown option.*'fitting'.*smoth_expr"):
        BuildConfig.load(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        BuildConfig.load(path)


def test_overrides_change_the_hash(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("qc:\n  min_frames: 10\n")
    cfg = BuildConfig.load(path)
    assert cfg.qc.min_frames == 10 and cfg.digest() != BuildConfig().digest()


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_storage_does_not_change_the_hash_and_unknown_compression_is_named(tmp_path, compression):
    path = tmp_path / "c.yaml"
    path.write_text(f"storage:\n  compression: {compression}\n  chunk_frames: 8\n")
    assert BuildConfig.load(path).digest() == BuildConfig().digest()
    path.write_text("storage:\n  compression: zstd\n")
    with pytest.raises(ConfigError, match="storage.compression.*zstd.*none, lzf, gzip"):
        BuildConfig.load(path)


def test_partial_fitting_section_keeps_the_video_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fitting:\n  smooth_expr: 3.0\n")
    cfg = BuildConfig.load(path)
    assert cfg.fitting.smooth_expr == 3.0
    assert cfg.fitting.landmark_offsets == "default" and cfg.fitting.landmark_sigma_mm == 3.0
    assert cfg.fitting.landmark_noise == "calibrated"


def test_the_command_line_starts_without_torch():
    """``recon3d --help``, the build's configuration and the build's main process before its workers
    start: torch (1-3 s to import), MediaPipe and PyAV are loaded only by what needs them."""
    import subprocess
    import sys

    for module in ("recon3d.cli.main", "recon3d.pipeline.config"):  # the config names the landmark defaults
        code = f"import sys, {module}; print(sorted(m for m in ('torch', 'mediapipe', 'av') if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        assert out.strip() == "[]", module


def test_a_local_build_loads_torch_only_in_its_workers(tmp_path):
    """The main process plans, schedules and merges; only the workers fit (and need torch), so
    they start without waiting for the main process to import it."""
    import subprocess
    import sys

    from tests.conftest import RAVDESS_VIDEO, STAND_IN, need

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "01-01-01-01-02-01-05.mp4").symlink_to(need(RAVDESS_VIDEO / "01-01-01-01-02-01-05.mp4"))
    args = ["recon3d", "build-dataset", str(videos), "--flame-model", str(need(STAND_IN)), "--out",
            str(tmp_path / "out"), "--no-progress", "--workers", "2"]
    code = (f"import runpy, sys; sys.argv = {args!r}\n"
            "try:\n    runpy.run_module('recon3d', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, sorted(m for m in ('torch', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.stdout.strip() == "0 []", out.stderr[-2000:]
    assert (tmp_path / "out" / "manifest.json").exists()


def test_the_build_identity_follows_the_landmark_embedding_files(tmp_path, monkeypatch):
    """A changed embedding file changes what a rerun compares, so old results are not kept."""
    import shutil

    from recon3d.pipeline.build import build_identity
    from tests.conftest import FLAME_DIR, STAND_IN, need

    copy = tmp_path / "mediapipe_landmark_embedding.npz"
    shutil.copy(need(FLAME_DIR / copy.name), copy)
    monkeypatch.setenv("RECON3D_MEDIAPIPE_EMBEDDING", str(copy))
    before = build_identity(BuildConfig(), STAND_IN)
    assert before == build_identity(BuildConfig(), STAND_IN)
    with open(copy, "ab") as f:
        f.write(b"\0")
    after = build_identity(BuildConfig(), STAND_IN)
    assert after["landmark_embeddings_sha256"] != before["landmark_embeddings_sha256"]
    assert {k: v for k, v in after.items() if k != "landmark_embeddings_sha256"} == \
           {k: v for k, v in before.items() if k != "landmark_embeddings_sha256"}


def test_changed_options_name_each_result_changing_key():
    """What a refused rerun reports: changed values and options one version did not have, not the
    device or storage (which change no result)."""
    from recon3d.pipeline.config import changed_options

    old = BuildConfig().to_dict()
    new = BuildConfig.from_dict({"fitting": {"smooth_expr": 3.0, "device": "cuda"}, "storage": {"compression": "lzf"},
                                 "qc": {"min_frames": 7}}).to_dict()
    del old["fitting"]["identity_open_eyes"]
    assert changed_options(old, new) == ["fitting.identity_open_eyes: (none) -> true", "fitting.smooth_expr: 20.0 -> 3.0",
                                         "qc.min_frames: 5 -> 7"]
    assert changed_options(new, new) == []
