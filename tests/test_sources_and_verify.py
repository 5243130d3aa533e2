"""Every result tied to its source: a changed video is rebuilt (and what depends on it), a touched
but identical one is not, a removed one stays marked until --prune; shards carry checksums, and
`recon3d verify` and the readers find a flipped byte or a truncated copy. Real videos, real builds,
real HDF5 files damaged on disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon3d.shards import open_dataset
from recon3d.shards.reader import ShardDamagedError
from tests import media
from tests.cli import build, run_cli, tiny_train_config
from tests.conftest import RAVDESS_VIDEO, need

pytestmark = pytest.mark.slow

NEUTRAL, SAD = "01-01-01-01-02-01-05", "01-01-04-01-01-01-05"


def two_clips(folder: Path) -> Path:
    """Copies (not links: the tests replace and remove them) of a neutral and a sad take."""
    folder.mkdir(parents=True)
    for clip_id in (NEUTRAL, SAD):
        media.copy(need(RAVDESS_VIDEO / f"{clip_id}.mp4"), folder / f"{clip_id}.mp4")
    return folder


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def vertices(out: Path, clip_id: str) -> np.ndarray:
    return open_dataset(out).load_clip(clip_id).vertices


@pytest.fixture
def small(tmp_path) -> tuple[Path, Path]:
    videos, out = two_clips(tmp_path / "videos"), tmp_path / "out"
    build(videos, out, "--workers", "2")
    return videos, out


def test_the_manifest_records_each_source(small):
    videos, out = small
    for entry in manifest_of(out)["clips"]:
        path = videos / f"{entry['id']}.mp4"
        st = path.stat()
        assert entry["source"]["path"] == str(path) and entry["source"]["size"] == st.st_size
        assert entry["source"]["mtime_ns"] == st.st_mtime_ns and len(entry["source"]["sha256"]) == 64
        assert entry["source_missing"] is False


def test_a_touched_but_identical_video_is_not_rebuilt(small):
    videos, out = small
    shard = out / "shards" / "actor_05.h5"
    before = shard.stat().st_mtime_ns
    os.utime(videos / f"{SAD}.mp4", ns=(1_600_000_000 * 10 ** 9, 1_600_000_000 * 10 ** 9))
    proc = build(videos, out)
    assert "redo" not in proc.stderr and "rebuilding" not in proc.stderr
    assert shard.stat().st_mtime_ns == before
    # The new time is remembered with the hash, so the next rerun does not read the video again.
    cache = json.loads((out / "work" / "sources.json").read_text())
    recorded = {e["id"]: e["source"] for e in manifest_of(out)["clips"]}[SAD]
    assert cache[SAD]["mtime_ns"] == 1_600_000_000 * 10 ** 9 and cache[SAD]["sha256"] == recorded["sha256"]


def test_a_replaced_video_is_rebuilt_and_its_dependants_with_it(small, tmp_path):
    videos, out = small
    neutral_before, sad_before = vertices(out, NEUTRAL), vertices(out, SAD)
    # The sad take replaced by another recording under the same name: only it is rebuilt.
    media.write_first_frames(need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4"), videos / f"{SAD}.mp4", 40)
    proc = build(videos, out)
    assert f"redo {SAD}: source changed" in proc.stderr and "rebuilding 1 clip(s): source changed 1" in proc.stderr
    entries = {e["id"]: e for e in manifest_of(out)["clips"]}
    assert entries[SAD]["frames"] == 40 and entries[SAD]["source"]["size"] == (videos / f"{SAD}.mp4").stat().st_size
    np.testing.assert_array_equal(vertices(out, NEUTRAL), neutral_before)  # not an identity clip: nothing else moves
    assert vertices(out, SAD).shape[0] == 40 != sad_before.shape[0]
    # The neutral take (the actor's identity) replaced: the identity is refitted, so the sad take is too.
    sad_now = vertices(out, SAD)
    media.write_first_frames(need(RAVDESS_VIDEO / f"{NEUTRAL}.mp4"), videos / f"{NEUTRAL}.mp4", 60)
    proc = build(videos, out)
    assert f"redo {NEUTRAL}: source changed" in proc.stderr
    assert manifest_of(out)["actors"]["05"]["identity_clips"] == [NEUTRAL]
    assert {e["id"]: e["frames"] for e in manifest_of(out)["clips"]}[NEUTRAL] == 60
    assert not np.allclose(vertices(out, SAD), sad_now, atol=1e-7), "the sad take kept a fit made with the old identity"


def test_a_removed_video_stays_marked_until_pruned(small):
    videos, out = small
    kept = vertices(out, SAD)
    (videos / f"{SAD}.mp4").unlink()
    proc = build(videos, out)
    assert "source missing: 1" in proc.stderr
    entries = {e["id"]: e for e in manifest_of(out)["clips"]}
    assert entries[SAD]["source_missing"] is True and entries[NEUTRAL]["source_missing"] is False
    np.testing.assert_array_equal(vertices(out, SAD), kept)  # nothing lost
    assert "source missing: 1" in run_cli("inspect", str(out)).stdout
    assert json.loads(run_cli("inspect", str(out), "--json").stdout)["source_missing"] == 1
    proc = build(videos, out, "--prune")
    assert "pruned 1 clip(s)" in proc.stderr
    assert [e["id"] for e in manifest_of(out)["clips"]] == [NEUTRAL]
    with h5py.File(out / "shards" / "actor_05.h5", "r") as f:
        assert list(f["clips"]) == [NEUTRAL] and f.attrs["n_clips"] == 1
    assert run_cli("verify", str(out), "--sources").returncode == 0


def _damaged_copy(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(built, out, ignore=shutil.ignore_patterns("work"))
    return out


def _flip_byte(path: Path, dataset: str) -> None:
    """Flip one byte in the middle of the dataset's first stored chunk, on disk."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
        assert f[dataset].fletcher32
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))


def test_verify_passes_on_a_whole_dataset(built):
    proc = run_cli("verify", str(built), "--sources", "--no-progress")
    assert proc.stdout == "" and "verified 1 shard(s), 4 clip(s), 4 video(s): no problems" in proc.stderr
    with h5py.File(built / "shards" / "actor_05.h5", "r") as f:
        group = f["clips"][NEUTRAL]
        for name in ("vertices", "audio", "landmarks", "flame/expression", "flame/jaw_pose", "camera/translation"):
            assert group[name].fletcher32, name
        assert f["actors/05/template"].fletcher32


def test_a_flipped_byte_in_vertex_data_is_found_by_verify_and_refused_by_readers(built, tmp_path):
    out = _damaged_copy(built, tmp_path)
    shard = out / "shards" / "actor_05.h5"
    _flip_byte(shard, f"clips/{SAD}/vertices")
    proc = run_cli("verify", str(out), "--no-progress", check_exit=1)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and f"clips/{SAD}/vertices" in lines[0] and str(shard) in lines[0], proc.stdout
    with pytest.raises(ShardDamagedError, match=f"actor_05.h5: clip {SAD}'s vertices cannot be read"):
        open_dataset(out).load_clip(SAD)
    np.testing.assert_array_equal(open_dataset(out).load_clip(NEUTRAL).vertices, vertices(built, NEUTRAL))
    proc = run_cli("export", str(out), "--format", "vocaset", "--out", str(tmp_path / "voca"), "--no-progress",
                   check_exit=2)
    assert f"clip {SAD}'s vertices cannot be read" in proc.stderr and "recon3d verify" in proc.stderr


def test_a_damaged_template_stops_training_with_the_shard_named(built, tmp_path):
    out = _damaged_copy(built, tmp_path)
    _flip_byte(out / "shards" / "actor_05.h5", "actors/05/template")
    proc = run_cli("train", str(out), "--out", str(tmp_path / "run"), "--max-steps", "1", "--no-progress",
                   "--config", str(tiny_train_config(tmp_path / "tiny.yaml")), check_exit=2)
    assert "actor_05.h5: actor 05's template cannot be read" in proc.stderr and "Traceback" not in proc.stderr


def test_a_truncated_shard_is_found_by_verify_and_refused_by_readers(built, tmp_path):
    out = _damaged_copy(built, tmp_path)
    shard = out / "shards" / "actor_05.h5"
    media.write_truncated(built / "shards" / "actor_05.h5", shard, 0.6)
    proc = run_cli("verify", str(out), "--no-progress", check_exit=1)
    assert f"{shard}: cannot be opened" in proc.stdout and "truncated" in proc.stdout
    with pytest.raises(ShardDamagedError, match="actor_05.h5: the file cannot be read"):
        open_dataset(out).load_clip(NEUTRAL)
