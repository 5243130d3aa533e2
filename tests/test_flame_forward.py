"""The torch forward pass against an independent numpy implementation of FLAME."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation


def numpy_flame(model, shape, expr, pose):
    """Reference FLAME written directly from the model's definition (one sample, float64)."""
    v = model.v_template + model.shapedirs @ shape + model.exprdirs @ expr
    joints = model.j_regressor @ v
    rot = Rotation.from_rotvec(pose.reshape(5, 3)).as_matrix()
    feat = np.concatenate([(rot[j] - np.eye(3)).ravel() for j in range(1, 5)])
    v_posed = v + model.posedirs @ feat
    world = [None] * 5
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = rot[j]
        parent = model.parents[j]
        local[:3, 3] = joints[j] - (joints[parent] if parent >= 0 else 0)
        world[j] = local if parent < 0 else world[parent] @ local
    skinning = []
    for j in range(5):
        g = world[j].copy()
        g[:3, 3] -= g[:3, :3] @ joints[j]
        skinning.append(g)
    blended = np.einsum("vj,jab->vab", model.lbs_weights, np.stack(skinning))
    homo = np.concatenate([v_posed, np.ones((len(v_posed), 1))], 1)
    verts = np.einsum("vab,vb->va", blended, homo)[:, :3]
    posed_joints = np.stack([w[:3, 3] for w in world])
    return verts, posed_joints


def _random_pose(rng, scale):
    pose = rng.normal(0, scale, 15)
    return pose


@pytest.mark.parametrize("case", ["random", "near_zero", "near_pi"])
def test_forward_matches_numpy_reference(flame_model, flame_layer, rng, case):
    shape = rng.normal(size=300)
    expr = rng.normal(size=100)
    if case == "random":
        pose = _random_pose(rng, 0.3)
    elif case == "near_zero":
        pose = _random_pose(rng, 1e-7)
    else:
        axes = rng.normal(size=(5, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        pose = (axes * (np.pi - 1e-4)).ravel()
    ref_v, ref_j = numpy_flame(flame_model, shape, expr, pose)
    t = lambda x: torch.as_tensor(x)[None]  # noqa: E731
    out = flame_layer(shape=t(shape), expression=t(expr), global_pose=t(pose[0:3]), neck_pose=t(pose[3:6]),
                      jaw_pose=t(pose[6:9]), eye_pose=t(pose[9:15]))
    np.testing.assert_allclose(out.vertices[0].numpy(), ref_v, atol=1e-5)
    np.testing.assert_allclose(out.joints[0].numpy(), ref_j, atol=1e-5)


def test_batched_shared_shape_subset_and_translation(flame_layer, rng):
    shape = torch.as_tensor(rng.normal(size=300))
    expr = torch.as_tensor(rng.normal(size=(4, 100)))
    jaw = torch.as_tensor(rng.normal(0, 0.2, (4, 3)))
    transl = torch.as_tensor(rng.normal(size=(4, 3)))
    per_sample = flame_layer(shape=shape.expand(4, -1), expression=expr, jaw_pose=jaw, translation=transl).vertices
    shared = flame_layer(shape=shape, expression=expr, jaw_pose=jaw, translation=transl).vertices
    np.testing.assert_allclose(shared.numpy(), per_sample.numpy(), atol=1e-10)
    ids = torch.tensor([0, 17, 3500, 5022])
    subset = flame_layer(shape=shape, expression=expr, jaw_pose=jaw, translation=transl, vertex_ids=ids).vertices
    np.testing.assert_allclose(subset.numpy(), per_sample[:, ids].numpy(), atol=1e-10)


def test_forward_is_differentiable(flame_layer):
    expr = torch.zeros(2, 100, dtype=torch.float64, requires_grad=True)
    jaw = torch.full((2, 3), 0.1, dtype=torch.float64, requires_grad=True)
    flame_layer(expression=expr, jaw_pose=jaw).vertices.square().sum().backward()
    assert expr.grad.abs().sum() > 0 and jaw.grad.abs().sum() > 0


def test_a_batch_longer_than_one_lbs_pass_equals_frames_one_at_a_time(flame_layer, rng):
    from recon3d.flame.layer import LBS_CHUNK

    n = 2 * LBS_CHUNK + 3
    shape = torch.as_tensor(rng.normal(size=300))
    expr = torch.as_tensor(rng.normal(size=(n, 100)))
    pose = {k: torch.as_tensor(rng.normal(0, 0.2, (n, d))) for k, d in
            (("global_pose", 3), ("neck_pose", 3), ("jaw_pose", 3), ("eye_pose", 6))}
    whole = flame_layer(shape=shape, expression=expr, **pose)
    for t in (0, LBS_CHUNK - 1, LBS_CHUNK, n - 1):
        one = flame_layer(shape=shape, expression=expr[t:t + 1], **{k: v[t:t + 1] for k, v in pose.items()})
        np.testing.assert_allclose(whole.vertices[t].numpy(), one.vertices[0].numpy(), atol=1e-10)
        np.testing.assert_allclose(whole.joints[t].numpy(), one.joints[0].numpy(), atol=1e-10)


@pytest.mark.parametrize("scale", [3.0, 0.3, 1e-3, 1e-5, 1e-9, 0.0])
def test_axis_angle_to_matrix_matches_scipy_at_every_angle(scale, rng):
    from recon3d.flame.lbs import axis_angle_to_matrix

    rotvec = rng.normal(0, 1, (200, 3)) * scale
    ours = axis_angle_to_matrix(torch.as_tensor(rotvec)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-14, rtol=0)


def test_axis_angle_to_matrix_has_exact_gradients_including_zero_rotation():
    from recon3d.flame.lbs import axis_angle_to_matrix

    for rotvec in (torch.zeros(1, 3), torch.tensor([[1e-6, -2e-6, 3e-7]]), torch.tensor([[0.4, -1.2, 2.0]])):
        x = rotvec.double().requires_grad_()
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,))
