"""Loading FLAME files: the stand-in, chumpy-era pickles, and every error users can hit."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

from recon3d.flame import FlameModelError, load_flame_model, load_mediapipe_embedding
from recon3d.flame.safe_pickle import UnsafePickleError, load_object_npy
from tests.conftest import FLAME_DIR, STAND_IN, need

SOURCE = "flame.is.tue.mpg.de"


def _raw_model() -> dict:
    with open(need(STAND_IN), "rb") as f:
        return pickle.load(f, encoding="latin1")


def _write(tmp_path, obj, name="model.pkl"):
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def test_stand_in_loads_with_requested_components(flame_model):
    assert flame_model.v_template.shape == (5023, 3)
    assert flame_model.faces.shape == (9976, 3)
    assert flame_model.shapedirs.shape == (5023, 3, 300)
    assert flame_model.exprdirs.shape == (5023, 3, 100)
    assert flame_model.parents.tolist() == [-1, 0, 1, 1, 1]
    small = load_flame_model(STAND_IN, n_shape=50, n_expr=20)
    assert small.shapedirs.shape[2] == 50 and small.exprdirs.shape[2] == 20
    np.testing.assert_array_equal(small.exprdirs, flame_model.exprdirs[:, :, :20])


def test_environment_variable_names_the_model(monkeypatch):
    monkeypatch.setenv("RECON3D_FLAME_MODEL", str(need(STAND_IN)))
    assert load_flame_model(None).n_vertices == 5023


def test_no_model_given_says_where_to_get_it(monkeypatch):
    monkeypatch.delenv("RECON3D_FLAME_MODEL", raising=False)
    with pytest.raises(FlameModelError, match="no FLAME model given.*flame.is.tue.mpg.de"):
        load_flame_model(None)


def test_missing_file(tmp_path):
    with pytest.raises(FlameModelError, match=rf"missing\.pkl: file not found.*{SOURCE}"):
        load_flame_model(tmp_path / "missing.pkl")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(FlameModelError, match="is a folder"):
        load_flame_model(tmp_path)


def test_text_file_is_not_a_flame_pickle(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("this is not a pickle\n")
    with pytest.raises(FlameModelError, match=r"notes\.pkl: not a FLAME pickle"):
        load_flame_model(path)


def test_pickle_of_the_wrong_kind(tmp_path):
    with pytest.raises(FlameModelError, match="holds a list, not a dict"):
        load_flame_model(_write(tmp_path, [1, 2, 3]))
    with pytest.raises(FlameModelError, match="missing keys: .*posedirs"):
        load_flame_model(_write(tmp_path, {"v_template": np.zeros((3, 3)), "f": np.zeros((1, 3))}))


@pytest.mark.parametrize("key, bad, message", [
    ("v_template", np.zeros((5023, 2)), r"'v_template' has shape \(5023, 2\), expected \(\*, 3\)"),
    ("shapedirs", np.zeros((5023, 3, 300)), "300 identity \\+ expression columns"),
    ("posedirs", np.zeros((5023, 3, 35)), r"'posedirs' has shape \(5023, 3, 35\)"),
    ("weights", np.zeros((5022, 5)), r"'weights' has shape \(5022, 5\), expected \(5023, 5\)"),
    ("f", np.full((10, 3), 6000), "'f' indexes vertex 6000 but the model has 5023 vertices"),
])
def test_wrong_array_shapes_are_named(tmp_path, key, bad, message):
    raw = _raw_model()
    raw[key] = bad
    with pytest.raises(FlameModelError, match=message):
        load_flame_model(_write(tmp_path, raw))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    path = _write(tmp_path, {"v_template": _Exploit()})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(FlameModelError, match=r"refused to load: refusing to load '(posix|os)\.system'"):
            load_flame_model(path)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()


def test_chumpy_arrays_convert_without_chumpy(tmp_path):
    """FLAME 2020 stores arrays as chumpy objects; build such a pickle with a fake chumpy module."""
    raw = _raw_model()
    fake = types.ModuleType("chumpy.ch")

    class Ch:
        pass

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    fake.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = fake
    try:
        wrapped = Ch()
        wrapped.__dict__.update({"x": raw["shapedirs"], "_dirty_vars": set(), "_itr": None})
        raw["shapedirs"] = wrapped
        path = _write(tmp_path, raw)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    model = load_flame_model(path)
    np.testing.assert_array_equal(model.shapedirs, _raw_model()["shapedirs"][:, :, :300])


def test_embedding_that_does_not_match_the_model(tmp_path, flame_model):
    data = dict(np.load(need(FLAME_DIR / "mediapipe_landmark_embedding.npz")))
    data["lmk_face_idx"] = data["lmk_face_idx"].copy()
    data["lmk_face_idx"][0] = 20000
    path = tmp_path / "mediapipe_landmark_embedding.npz"
    np.savez(path, **data)
    with pytest.raises(FlameModelError, match="names triangle 20000 but the FLAME model .* has 9976 triangles"):
        load_mediapipe_embedding(flame_model, path)


def test_missing_embedding_says_where_it_comes_from(tmp_path, flame_model):
    with pytest.raises(FlameModelError, match="file not found.*smirk"):
        load_mediapipe_embedding(flame_model, tmp_path / "nope.npz")


def test_deca_embedding_loads_safely_in_a_fresh_interpreter():
    """torch tensors inside the .npy are rebuilt without the general unpickler."""
    code = ("from recon3d.flame.safe_pickle import load_object_npy;"
            f"d = load_object_npy(r'{need(FLAME_DIR / 'landmark_embedding.npy')}').item();"
            "print(sorted(d), tuple(d['dynamic_lmk_faces_idx'].shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "(79, 17)" in out and "static_lmk_faces_idx" in out


def test_unsafe_npy_is_refused(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Exploit()], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        load_object_npy(path)
