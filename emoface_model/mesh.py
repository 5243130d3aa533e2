"""A coarse version of the FLAME mesh for Mesh Attention: sampling, down/up-sampling and spirals.

* Coarse vertices: geodesic farthest-point sampling on the mesh graph (edge lengths of the
  template), so they spread evenly over the surface; each fine vertex belongs to the cell of its
  geodesically nearest coarse vertex.
* Down-sampling: the mean over a cell. Up-sampling: inverse-geodesic-distance weights of the 3
  nearest coarse vertices (geodesic, so upper and lower lips never mix).
* Coarse connectivity: two cells are neighbours when a fine edge joins them.
* Spirals (SpiralNet++ style): per coarse vertex, itself, then its first ring, then its second,
  each ring ordered by angle in the tangent plane starting from the template's "up" direction;
  fixed length, padded by repeating the last entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import dijkstra

from recon3d.render.shading import vertex_normals


@dataclass
class MeshHierarchy:
    coarse_ids: np.ndarray  # (C,) fine vertex ids of the coarse vertices
    cell: np.ndarray  # (V,) coarse index of each fine vertex
    up_index: np.ndarray  # (V, 3) coarse neighbours of each fine vertex
    up_weight: np.ndarray  # (V, 3) their weights (rows sum to 1)
    spirals: np.ndarray  # (C, S) coarse indices

    @property
    def n_coarse(self) -> int:
        return len(self.coarse_ids)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("coarse_ids", "cell", "up_index", "up_weight", "spirals")}

    @classmethod
    def from_dict(cls, d: dict) -> "MeshHierarchy":
        return cls(**{k: np.asarray(d[k]) for k in ("coarse_ids", "cell", "up_index", "up_weight", "spirals")})


def _graph(vertices: np.ndarray, faces: np.ndarray) -> scipy.sparse.csr_matrix:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    n = len(vertices)
    g = scipy.sparse.coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(n, n))
    return (g + g.T).tocsr()


def _ordered_ring(centre: np.ndarray, normal: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Order ``points`` by angle around ``centre`` in the tangent plane, starting near +y."""
    ref = np.array([0.0, 1.0, 0.0]) - normal * normal[1]
    if np.linalg.norm(ref) < 1e-6:
        ref = np.array([1.0, 0.0, 0.0]) - normal * normal[0]
    ref /= np.linalg.norm(ref)
    other = np.cross(normal, ref)
    d = points - centre
    return np.argsort(np.arctan2(d @ other, d @ ref), kind="stable")


def build_hierarchy(template: np.ndarray, faces: np.ndarray, n_coarse: int = 192, spiral_length: int = 10) -> MeshHierarchy:
    """Coarse mesh, sampling operators and spirals for ``template (V, 3)`` with ``faces (F, 3)``."""
    template = np.asarray(template, np.float64)
    graph = _graph(template, faces)
    start = int(np.argmin(np.linalg.norm(template - template.mean(0), axis=1)))
    chosen = [start]
    dist = dijkstra(graph, indices=start)
    for _ in range(n_coarse - 1):
        far = np.where(np.isinf(dist), np.inf, dist)
        nxt = int(np.argmax(far))  # unreached components (the eyeballs) come first
        chosen.append(nxt)
        dist = np.minimum(dist, dijkstra(graph, indices=nxt))
    coarse = np.array(chosen)
    all_dist = dijkstra(graph, indices=coarse)  # (C, V)
    all_dist[np.isinf(all_dist)] = 1e9
    cell = np.argmin(all_dist, axis=0)
    nearest = np.argsort(all_dist, axis=0)[:3].T  # (V, 3)
    d = np.take_along_axis(all_dist.T, nearest, axis=1)
    w = 1.0 / np.maximum(d, 1e-6)
    w[d >= 1e8] = 0.0  # never interpolate across disconnected parts
    w[d < 1e-9] = 0.0
    exact = d[:, 0] < 1e-9
    w[exact] = 0.0
    w[exact, 0] = 1.0
    w /= w.sum(axis=1, keepdims=True)
    # Coarse neighbours: cells joined by a fine edge.
    coo = graph.tocoo()
    a, b = cell[coo.row], cell[coo.col]
    pairs = np.unique(np.stack([a[a != b], b[a != b]], 1), axis=0)
    neighbours = [set() for _ in range(n_coarse)]
    for i, j in pairs:
        neighbours[i].add(int(j))
    normals = vertex_normals(template, faces)[coarse]
    pos = template[coarse]
    spirals = np.zeros((n_coarse, spiral_length), np.int64)
    for i in range(n_coarse):
        ring1 = np.array(sorted(neighbours[i]), dtype=np.int64)
        ring1 = ring1[_ordered_ring(pos[i], normals[i], pos[ring1])] if len(ring1) else ring1
        ring2 = np.array(sorted(set().union(*[neighbours[j] for j in ring1]) - {i} - set(ring1.tolist())), dtype=np.int64) \
            if len(ring1) else np.zeros(0, np.int64)
        ring2 = ring2[_ordered_ring(pos[i], normals[i], pos[ring2])] if len(ring2) else ring2
        seq = np.concatenate([[i], ring1, ring2])[:spiral_length]
        spirals[i] = np.pad(seq, (0, spiral_length - len(seq)), mode="edge")
    return MeshHierarchy(coarse_ids=coarse, cell=cell, up_index=nearest, up_weight=w.astype(np.float32), spirals=spirals)
