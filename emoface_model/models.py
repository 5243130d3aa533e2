"""The EmoFace animator and the FaceFormer-style baseline.

Both map audio (+ labels) to per-frame vertex offsets from the speaker's template, decoding
autoregressively: the input at frame ``t`` is the motion of frame ``t - 1`` (or, at the first
frame, a given initial frame or a learned start vector), so generation can start from any frame.

EmoFace (docs/model.md): a content stream and an emotion stream (causal decoders over the shared
audio features; the emotion stream also sees the emotion and intensity) each predict full-mesh
offsets; Mesh Attention compares the two streams on a coarse mesh with spatio-temporal spiral
convolutions and gates, per vertex and frame, how much of each goes into the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from emoface_model.audio import build_audio_encoder
from recon3d.config_io import ConfigError
from emoface_model.layers import CausalDecoder, SpiralConv3D
from emoface_model.mesh import MeshHierarchy

#: Motion is handled in millimetres inside the networks (offsets are a few mm; metres outside).
MM = 1000.0


@dataclass
class ModelConfig:
    model: str = "emoface"  # emoface | faceformer
    dim: int = 128
    heads: int = 4
    layers: int = 2
    window: int = 90  # frames of motion history each frame attends to
    audio_encoder: str = "mel"  # mel | wav2vec2 | hubert
    audio_encoder_path: str | None = None
    audio_encoder_mode: str = "fine_tune"  # fine_tune | frozen (pretrained encoders; emoface_model.audio)
    n_coarse: int = 192  # coarse vertices for Mesh Attention
    spiral_length: int = 10
    spiral_taps: int = 3  # frames in a SpiralConv3D (current and previous)
    attention_channels: int = 16
    # Ablations (docs/model.md#ablations): how the two streams are fused, and whether there are two.
    fusion: str = "mesh_attention"  # mesh_attention | plain (the streams' offsets added, no gates)
    emotion_stream: bool = True  # False: one stream, conditioned on style + emotion + intensity
    # Label embeddings: RAVDESS's 8 emotions and 2 intensities; a run on data with MEAD's contempt
    # (emotion 9) or a third level (MEAD, CREMA-D) grows them (emoface_model.run.prepare_run).
    n_emotions: int = 8
    n_intensities: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class TalkingFace(nn.Module):
    """Shared parts: audio encoder, style (speaker) and label embeddings, motion input."""

    def __init__(self, config: ModelConfig, n_vertices: int, n_actors: int):
        super().__init__()
        self.config = config
        self.n_vertices = n_vertices
        d = config.dim
        self.audio = build_audio_encoder(config.audio_encoder, d, config.audio_encoder_path, config.audio_encoder_mode)
        self.style = nn.Embedding(max(n_actors, 1), d)
        nn.init.normal_(self.style.weight, std=0.02)
        self.start = nn.Parameter(torch.zeros(d))

    def encode_audio(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Audio ``(B, N)`` at 16 kHz -> features ``(B, n_frames, dim)`` aligned to the frames."""
        return self.audio(audio, n_frames)

    def style_of(self, actor: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Speaker embeddings; ``actor`` -1 (or None) is an unseen speaker: the mean style."""
        mean = self.style.weight.mean(0)
        if actor is None:
            return mean.expand(batch, -1)
        known = actor.clamp_min(0)
        return torch.where((actor >= 0)[:, None], self.style(known), mean.expand(batch, -1))

    def motion_input(self, offsets: torch.Tensor) -> torch.Tensor:
        """What the decoder is fed of a frame's motion ``(..., V, 3)`` (see the subclasses)."""
        return offsets

    def motion_inputs(self, prev: torch.Tensor, has_prev: torch.Tensor, encode) -> torch.Tensor:
        """Embed the previous frames' motion inputs; frame 0 without a given frame uses the start vector."""
        x = encode(prev)
        first = torch.where(has_prev[:, None], x[:, 0], self.start.expand(x.shape[0], -1))
        return torch.cat([first[:, None], x[:, 1:]], 1)


class FaceFormer(TalkingFace):
    """Baseline: same audio encoder, one causal transformer decoder, linear vertex output; no emotion."""

    def __init__(self, config: ModelConfig, n_vertices: int, n_actors: int, **_):
        super().__init__(config, n_vertices, n_actors)
        d = config.dim
        self.motion_in = nn.Linear(n_vertices * 3, d)
        self.decoder = CausalDecoder(d, config.heads, config.layers, config.window)
        self.head = nn.Linear(d, n_vertices * 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _encode(self, m: torch.Tensor) -> torch.Tensor:
        return self.motion_in(MM * m.flatten(2))

    def forward(self, feats, prev, has_prev, emotion=None, intensity=None, actor=None, template=None):
        """Teacher-forced pass over audio features ``(B, T, dim)``; ``prev[:, t]`` is the motion input
        of frame t. Returns offsets ``(B, T, V, 3)`` and what the model feeds itself of them."""
        b, t = feats.shape[:2]
        x = self.motion_inputs(prev, has_prev, self._encode) + feats + self.style_of(actor, b)[:, None]
        offsets = self.head(self.decoder(x)).view(b, t, self.n_vertices, 3) / MM
        return offsets, offsets

    @torch.no_grad()
    def generate(self, feats, emotion=None, intensity=None, actor=None, template=None, initial=None, teacher=None):
        """Autoregressive decoding, one frame at a time, from ``initial (B, V, 3)`` or the start vector.

        With ``teacher (B, T, V, 3)`` each step's input is that true motion instead of the
        prediction (a check that step-by-step decoding equals the parallel pass)."""
        initial = None if initial is None else self.motion_input(initial)
        teacher = None if teacher is None else self.motion_input(teacher)
        b, n_frames = feats.shape[:2]
        style = self.style_of(actor, b)
        caches = [{} for _ in self.decoder.blocks]
        prev, out = initial, []
        for t in range(n_frames):
            x = self.start.expand(b, -1) if prev is None else self._encode(prev[:, None])[:, 0]
            h = self.decoder((x + feats[:, t] + style)[:, None], caches)
            prev = self.head(h[:, 0]).view(b, self.n_vertices, 3) / MM
            out.append(prev)
            if teacher is not None:
                prev = teacher[:, t]
        return torch.stack(out, 1)


class EmoFace(TalkingFace):
    """Content and emotion streams fused by Mesh Attention (see the module docstring)."""

    def __init__(self, config: ModelConfig, n_vertices: int, n_actors: int, hierarchy: MeshHierarchy):
        super().__init__(config, n_vertices, n_actors)
        d, c = config.dim, hierarchy.n_coarse
        self.hierarchy = hierarchy
        counts = np.bincount(hierarchy.cell, minlength=c).clip(1).astype(np.float32)
        self.register_buffer("cell", torch.from_numpy(hierarchy.cell).long(), persistent=False)
        self.register_buffer("cell_size", torch.from_numpy(counts)[:, None], persistent=False)
        rows = np.repeat(np.arange(n_vertices), hierarchy.up_index.shape[1])
        up = torch.sparse_coo_tensor(np.stack([rows, hierarchy.up_index.reshape(-1)]),
                                     hierarchy.up_weight.reshape(-1), (n_vertices, c), check_invariants=True).coalesce()
        self.register_buffer("up", up, persistent=False)  # (V, C) sparse: coarse -> full mesh
        spirals = torch.from_numpy(hierarchy.spirals)
        self.motion_in = nn.Linear(c * 3, d)
        self.emotion = nn.Embedding(config.n_emotions, d)
        self.intensity = nn.Embedding(config.n_intensities, d)
        if config.fusion not in ("mesh_attention", "plain"):
            raise ConfigError(f"model.fusion: '{config.fusion}' is not mesh_attention or plain")
        self.two_streams = bool(config.emotion_stream)
        self.gated = self.two_streams and config.fusion == "mesh_attention"
        self.content_decoder = CausalDecoder(d, config.heads, config.layers, config.window)
        self.content_head = nn.Linear(d, n_vertices * 3)
        heads = [self.content_head]
        if self.two_streams:
            self.emotion_decoder = CausalDecoder(d, config.heads, config.layers, config.window)
            self.emotion_head = nn.Linear(d, n_vertices * 3)
            heads.append(self.emotion_head)
        for head in heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        if self.gated:
            ch, taps = config.attention_channels, config.spiral_taps
            self.attention1 = SpiralConv3D(9, ch, spirals, taps)
            self.attention2 = SpiralConv3D(ch, 2, spirals, taps)
            nn.init.zeros_(self.attention2.linear.weight)

    # --- pieces shared by the parallel and the step-by-step paths
    def _coarse(self, full: torch.Tensor) -> torch.Tensor:
        """Cell means ``(..., V, 3)`` -> ``(..., C, 3)``."""
        lead, (v, k) = full.shape[:-2], full.shape[-2:]
        rows = full.reshape(-1, v, k).transpose(0, 1)  # (V, N, 3): whole rows are summed per cell
        out = rows.new_zeros(self.hierarchy.n_coarse, rows.shape[1], k).index_add_(0, self.cell, rows)
        return (out / self.cell_size[:, :, None]).transpose(0, 1).reshape(*lead, -1, k)

    def motion_input(self, offsets: torch.Tensor) -> torch.Tensor:
        """EmoFace is fed the coarse mesh's motion ``(..., C, 3)``: cheap, and all it needs."""
        return self._coarse(offsets)

    def _encode(self, coarse: torch.Tensor) -> torch.Tensor:
        return self.motion_in(MM * coarse.flatten(-2))

    def _coarse_heads(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Both heads with their rows averaged per cell: ``coarse(head(h)) = h @ W.T + b`` without
        the full mesh. Computed once per forward pass or generation."""
        folded = []
        for head in self._heads():
            d = head.weight.shape[1]
            weight = self._coarse(head.weight.view(1, self.n_vertices, 3 * d)).view(-1, d)  # (3C, d)
            bias = self._coarse(head.bias.view(1, self.n_vertices, 3)).reshape(-1)
            folded.append((weight, bias))
        return folded

    def _heads(self) -> list[nn.Linear]:
        return [self.content_head, self.emotion_head] if self.two_streams else [self.content_head]

    def _conditions(self, b, emotion, intensity, actor):
        """Content stream: the speaker style; emotion stream: style + emotion + intensity (with one
        stream, that stream gets the emotion)."""
        style = self.style_of(actor, b)
        emo = (style + self.emotion(emotion) + self.intensity(intensity))[:, None]
        return (style[:, None], emo) if self.two_streams else (emo, None)

    def _streams(self, x, cond_c, cond_e, caches_c=None, caches_e=None):
        h_c = self.content_decoder(x + cond_c, caches_c)
        return h_c, (self.emotion_decoder(x + cond_e, caches_e) if self.two_streams else None)

    def _attend(self, h_content, h_emotion, folded, template_c, hist1=None, hist2=None):
        """Mesh Attention on the coarse mesh: per-vertex gates ``(B, T, C, 2)`` of the two streams
        from spiral convolutions of both streams' coarse offsets (mm) and the template (dm), and
        the gated coarse motion (m). Also returns the convolution inputs (step-by-step history).
        Plain fusion: gates of one; one stream: its own offsets."""
        b, t = h_content.shape[:2]
        hs = (h_content, h_emotion) if self.two_streams else (h_content,)
        coarse = [(h @ w.T + bias).view(b, t, -1, 3) for h, (w, bias) in zip(hs, folded)]
        if not self.gated:
            gates = coarse[0].new_ones(b, t, coarse[0].shape[2], len(coarse))
            return gates, sum(coarse) / MM, None, None
        feat = torch.cat([coarse[0], coarse[1], 10.0 * template_c[:, None].expand(-1, t, -1, -1)], -1)
        hidden = torch.nn.functional.gelu(self.attention1(feat, hist1))
        gates = torch.sigmoid(self.attention2(hidden, hist2) + 2.0)  # both streams open at the start
        motion = (gates[..., :1] * coarse[0] + gates[..., 1:] * coarse[1]) / MM
        return gates, motion, feat, hidden

    def _full_mesh(self, h_content, h_emotion, gates):
        """Gated full-mesh offsets (m): the heads, the coarse gates brought to every vertex."""
        b, t, c = gates.shape[:3]
        content = self.content_head(h_content).view(b, t, self.n_vertices, 3)
        if not self.two_streams:
            return content / MM
        emotion = self.emotion_head(h_emotion).view(b, t, self.n_vertices, 3)
        if not self.gated:
            return (content + emotion) / MM
        columns = gates.permute(2, 0, 1, 3).reshape(c, -1).float()  # (C, B*T*2)
        with torch.autocast(columns.device.type, enabled=False):  # sparse products stay fp32 under bf16
            full_gates = torch.sparse.mm(self.up, columns).view(self.n_vertices, b, t, 2).permute(1, 2, 0, 3)
        return (full_gates[..., :1] * content + full_gates[..., 1:] * emotion) / MM

    def forward(self, feats, prev, has_prev, emotion, intensity, actor=None, template=None):
        """Teacher-forced pass over all frames (parallel); ``prev[:, t]`` is frame t's coarse motion
        input. Returns offsets ``(B, T, V, 3)`` and the coarse motion the model feeds itself."""
        b = feats.shape[0]
        style, emo = self._conditions(b, emotion, intensity, actor)
        x = self.motion_inputs(prev, has_prev, self._encode) + feats
        h_content, h_emotion = self._streams(x, style, emo)
        gates, motion, _, _ = self._attend(h_content, h_emotion, self._coarse_heads(), self._coarse(template))
        return self._full_mesh(h_content, h_emotion, gates), motion

    @torch.no_grad()
    def generate(self, feats, emotion, intensity, actor=None, template=None, initial=None, teacher=None):
        """Autoregressive decoding, one frame at a time, from ``initial (B, V, 3)`` or the start vector
        (``teacher``: feed true motion instead of predictions, as in :meth:`FaceFormer.generate`).

        Only the coarse mesh is in the loop; the full mesh is computed for all frames at the end."""
        b, n_frames = feats.shape[:2]
        style, emo = self._conditions(b, emotion, intensity, actor)
        template_c = self._coarse(template)
        folded = self._coarse_heads()
        teacher = None if teacher is None else self.motion_input(teacher)
        caches_c = [{} for _ in self.content_decoder.blocks]
        caches_e = [{} for _ in self.emotion_decoder.blocks] if self.two_streams else None
        taps = self.config.spiral_taps
        hist1 = hist2 = None
        prev = None if initial is None else self.motion_input(initial)
        hs_c, hs_e, all_gates = [], [], []
        for t in range(n_frames):
            x = (self.start.expand(b, -1) if prev is None else self._encode(prev)) + feats[:, t]
            h_c, h_e = self._streams(x[:, None], style, emo, caches_c, caches_e)
            gates, motion, feat, hidden = self._attend(h_c, h_e, folded, template_c, hist1, hist2)
            if self.gated:
                hist1, hist2 = _history(hist1, feat, taps), _history(hist2, hidden, taps)
            hs_c.append(h_c)
            hs_e.append(h_e)
            all_gates.append(gates)
            prev = motion[:, 0] if teacher is None else teacher[:, t]
        return self._full_mesh(torch.cat(hs_c, 1), torch.cat(hs_e, 1) if self.two_streams else None,
                               torch.cat(all_gates, 1))


def _history(history: torch.Tensor | None, new: torch.Tensor, taps: int) -> torch.Tensor:
    """The last ``taps - 1`` frames of spiral-convolution inputs (zeros before the start)."""
    if history is None:
        history = new.new_zeros(new.shape[0], taps - 1, *new.shape[2:])
    return torch.cat([history, new], 1)[:, -(taps - 1):]


def build_model(config: ModelConfig, n_vertices: int, n_actors: int, hierarchy: MeshHierarchy | None) -> TalkingFace:
    if config.model == "faceformer":
        return FaceFormer(config, n_vertices, n_actors)
    if config.model == "emoface":
        if hierarchy is None:
            raise ValueError("EmoFace needs the coarse mesh hierarchy")
        return EmoFace(config, n_vertices, n_actors, hierarchy)
    raise ConfigError(f"model.model: unknown model '{config.model}' (emoface or faceformer)")
