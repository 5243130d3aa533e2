"""The local build's stage schedule on a RAVDESS-shaped tree of several actors: every clip exactly
once, one identity per actor from its neutral take, and kill -9 at any point of the new stage
order resumes to the same dataset. Real clips, real MediaPipe, real HDF5."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon3d.shards import open_dataset
from tests.cli import build
from tests.conftest import RAVDESS_VIDEO, STAND_IN, need

pytestmark = pytest.mark.slow

ACTORS, SOURCES = 6, ("01-01-01-01-02-01-05", "01-01-04-01-01-01-05")  # a neutral take and a sad one


def layout_tree(root: Path) -> Path:
    """``root/Actor_XX/...-XX.mp4``: the shared clips hard-linked under the names of six actors."""
    for actor in range(1, ACTORS + 1):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for stem in SOURCES:
            os.link(need(RAVDESS_VIDEO / f"{stem}.mp4"), folder / f"{stem[:-2]}{actor:02d}.mp4")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return layout_tree(tmp_path_factory.mktemp("tree") / "videos")


@pytest.fixture(scope="module")
def tree_build(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tree_build") / "out"
    build(tree, out, "--workers", "2")
    return out


def test_every_clip_once_and_one_identity_per_actor(tree, tree_build):
    manifest = json.loads((tree_build / "manifest.json").read_text())
    ids = [c["id"] for c in manifest["clips"]]
    assert len(ids) == len(set(ids)) == ACTORS * len(SOURCES) and not manifest["failures"]
    assert sorted(manifest["actors"]) == [f"{a:02d}" for a in range(1, ACTORS + 1)]
    for actor, report in manifest["actors"].items():
        assert report["identity_clips"] == [f"{SOURCES[0][:-2]}{actor}"] and report["identity_from_neutral"]
        with h5py.File(tree_build / "shards" / f"actor_{actor}.h5", "r") as f:
            assert sorted(f["clips"]) == sorted(f"{s[:-2]}{actor}" for s in SOURCES)
            assert list(f["actors"]) == [actor]
    # Same videos under other actors' names: the same identity and meshes.
    ds = open_dataset(tree_build)
    first = ds.load_clip(f"{SOURCES[1][:-2]}01").vertices
    np.testing.assert_allclose(ds.load_clip(f"{SOURCES[1][:-2]}{ACTORS:02d}").vertices, first, atol=1e-6)


def test_kill_during_the_stage_schedule_resumes_to_the_same_dataset(tree, tree_build, tmp_path):
    """SIGKILL once some identities and fits exist but the build is not finished; rerun; same dataset."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(tree), "--flame-model", str(need(STAND_IN)),
            "--out", str(out), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    work = out / "work" / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and not (list(work.glob("*/identity/*.npz")) and list(work.glob("*/clips/*.h5"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be killed"
    assert len(list(out.glob("shards/*.h5"))) < ACTORS, "every shard was already assembled"
    build(tree, out, "--workers", "2")
    ds, ref = open_dataset(out), open_dataset(tree_build)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids())
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)
    assert not list(out.rglob("*.tmp"))


PAGE_FAULTS_OF_FREED_BLOCKS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from recon3d.pipeline.stages import keep_freed_memory
    keep_freed_memory()

def blocks():  # like the fitter's temporaries: blocks of 1-6 MB, written, then freed
    for _ in range(20):
        xs = [np.ones(((1 + k) << 20) // 8) for k in range(6)]
        del xs

blocks()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
blocks()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_build_processes_reuse_freed_memory_instead_of_faulting_it_in_again():
    """Build processes keep freed blocks (keep_freed_memory): 20 rounds of 21 MB of temporaries
    fault in next to nothing, where glibc's default gives the blocks back to the kernel and faults
    most of them in anew every round."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_FREED_BLOCKS, mode], check=True,
                                       capture_output=True, text=True).stdout) for mode in ("default", "keep")}
    pages_per_round = (21 << 20) // 4096
    assert faults["default"] > 4 * pages_per_round, faults
    assert faults["keep"] < pages_per_round / 5, faults
