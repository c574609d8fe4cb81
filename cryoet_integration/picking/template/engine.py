"""Masked, locally normalised FFT cross-correlation of a template over many orientations.

The score at position ``s`` for orientation ``R`` is the normalised cross-correlation

    NCC(s, R) = sum_x T_R(x) f(s + x) / (sqrt(N_M * N_O(s)) * sigma_O(s))

where ``f`` is the band-passed tomogram (zero-padded beyond its faces, then filtered on the
padded grid, so that the pruned transforms below are exact), ``T_R`` the rotated template
after its Fourier weighting (band-pass, missing wedge, CTF) normalised to zero mean and unit
variance under the mask ``M`` (and set to zero outside it), ``N_M = sum_x M(x)``, and
``N_O(s)`` and ``sigma_O(s)`` the mask weight and the standard deviation of ``f`` over the
part of the mask around ``s`` that lies inside the tomogram (computed once, with FFT
correlations of ``f``, ``f^2`` and the tomogram's support). Away from the faces
``N_O = N_M`` and this is the usual masked NCC in [-1, 1]. Where the mask sticks out of a face,
the correlation over the overlap is multiplied by ``sqrt(N_O / N_M)``, so that background
scores keep the same spread as inside and one false-positive cut-off holds everywhere;
positions whose overlap is below :data:`MIN_OVERLAP` of the mask are not scored.

The transforms have the tomogram's size plus half the template box and :data:`LOCAL_SHIFT`
voxels on each axis (rounded up to a fast FFT length), so a correlation never wraps around
to the opposite face.

Speed: the tomogram spectrum is computed once and kept only inside the band-pass cube
(``|k| < low_pass``); per orientation the template's transform is *pruned* (the zero padding
of the n^3 template is never transformed: x lines only where the template is, y and z lines
only at the kept frequencies) and the inverse transform skips the lines that are zero
outside the band and, after each axis, the padding. At the default low-pass (0.25
cycles/voxel) this does about a third of the work of one full forward and inverse FFT and
gives the same numbers. scipy.fft uses the workers of the caller's ``scipy.fft.set_workers``
context (``--threads``); the rest runs in float32 torch on the CPU or a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...segmentation.device import resolve_device
from .filters import bandpass, radial_frequency, sphere

ProgressFn = Callable[[int, int, float], None]
# Smallest part of the mask (by weight) that must lie inside the tomogram for a position
# to be scored: a ball centred on a face keeps half; an edge a quarter, a corner an eighth.
MIN_OVERLAP = 0.5
# Largest shift (voxels) :meth:`TemplateMatcher.local_search` tries around a centre.
LOCAL_SHIFT = 2


@dataclasses.dataclass
class PreparedTemplate:
    """A template ready for matching (all on the tomogram's voxel grid).

    Attributes:
        data: (n, n, n) float32 density, odd ``n``, centre voxel ``n // 2``, positive = dense.
        mask: (n, n, n) float32 weights in [0, 1] under which scores are normalised.
        weights: (n, n, n // 2 + 1) Fourier weights applied after each rotation.
        sign: -1.0 when particles are dark in the tomogram (raw cryo-ET), +1.0 if light.
        rotate_mask: the mask is not a ball, so it turns with the template.
        radius: particle radius in voxels (peak exclusion).
    """

    data: np.ndarray
    mask: np.ndarray
    weights: np.ndarray
    sign: float
    rotate_mask: bool
    radius: float

    @property
    def size(self) -> int:
        """Edge of the cubic box, voxels."""
        return int(self.data.shape[0])


@dataclasses.dataclass
class SearchResult:
    """Running maxima of a global search.

    Attributes:
        scores: (Z, Y, X) best NCC over the searched orientations (0 where not scored); in a
            checkpoint, the best correlation numerators instead.
        index: (Z, Y, X) int32 index of the best orientation (-1 where never better than 0).
        done: orientations searched so far.
        sum_sq: sum of squared scores over the (every 4th along each axis) valid voxels and
            the searched orientations.
        count: number of (voxel, orientation) values in ``sum_sq``.
    """

    scores: np.ndarray
    index: np.ndarray
    done: int
    sum_sq: float
    count: int

    @property
    def sigma(self) -> float:
        """Standard deviation of single-orientation scores (their mean is ~0)."""
        return float(np.sqrt(self.sum_sq / self.count)) if self.count else 0.0


def _kept(freqs: np.ndarray, k_max: float) -> np.ndarray:
    return np.flatnonzero(np.abs(freqs) < k_max)


class TemplateMatcher:
    """One tomogram and one template: global and local orientation searches.

    Args:
        tomogram: (Z, Y, X) array.
        template: the prepared template.
        low_pass: band-pass upper edge, cycles/voxel (None: up to Nyquist).
        high_pass: band-pass lower edge, cycles/voxel (None: keep all but the mean).
        device: torch device name, or None / "auto" for the GPU when there is one.
    """

    def __init__(self, tomogram: np.ndarray, template: PreparedTemplate,
                 low_pass: float | None = 0.25, high_pass: float | None = None,
                 device: str | None = None) -> None:
        import scipy.fft as sfft
        import torch

        self.device = torch.device(resolve_device(device))
        self.template = template
        self.shape = tuple(int(s) for s in tomogram.shape)
        n, c = template.size, template.size // 2
        if any(s < n for s in self.shape):
            raise ValueError(f"template box {n} is larger than the tomogram {self.shape[::-1]}")
        # zeros after each axis hold both overhangs of a circular correlation (the template's
        # half box, and the shifts of a local search)
        pad = c + LOCAL_SHIFT
        self.fft_shape = (sfft.next_fast_len(self.shape[0] + pad),
                          sfft.next_fast_len(self.shape[1] + pad),
                          sfft.next_fast_len(self.shape[2] + pad, real=True))
        f = np.asarray(tomogram, dtype=np.float32)
        padded = np.zeros(self.fft_shape, dtype=np.float32)
        padded[:self.shape[0], :self.shape[1], :self.shape[2]] = f - np.float32(f.mean())
        spec = sfft.rfftn(padded)
        del padded
        spec *= bandpass(radial_frequency(self.fft_shape), low_pass, high_pass).astype(
            np.float32)
        # on the padded grid, [z, y, x]; the tomogram is its corner [:Z, :Y, :X]
        self.filtered = sfft.irfftn(spec, s=self.fft_shape).astype(np.float32)
        del spec

        # Local statistics under a ball (the mask itself when it does not turn with R).
        stat_mask = template.mask
        if template.rotate_mask:
            volume = float(template.mask.sum())
            stat_mask = sphere(n, (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0))
        self.mask_sum = float(template.mask.sum())
        overlap, sigma = self._local_stats(stat_mask)
        valid = overlap >= MIN_OVERLAP * float(stat_mask.sum())
        floor = 1e-6 * float(np.median(sigma[valid])) if valid.any() else 0.0
        valid &= sigma > floor
        inv = np.zeros(self.shape, dtype=np.float32)
        inv[valid] = 1.0 / (np.sqrt(self.mask_sum * overlap[valid]) * sigma[valid])
        self.n_valid = int(valid.sum())
        self.inv_norm = torch.as_tensor(inv, device=self.device)

        # Tomogram spectrum (shifted so the score lands on the template centre), kept only in
        # the cube of frequencies the band-pass lets through.
        k_max = 0.5 + 1e-9 if low_pass is None else float(low_pass)
        lz, ly, lx = self.fft_shape
        zi, yi = _kept(np.fft.fftfreq(lz), k_max), _kept(np.fft.fftfreq(ly), k_max)
        self.n_kx = int(len(_kept(np.fft.rfftfreq(lx), k_max)))
        full = sfft.rfftn(self._rolled(self.filtered))
        block = full[zi][:, yi][:, :, :self.n_kx]
        del full
        self.spectrum = torch.as_tensor(block.astype(np.complex64), device=self.device)
        self.zi = torch.as_tensor(zi, device=self.device)
        self.yi = torch.as_tensor(yi, device=self.device)
        self._zi_np, self._yi_np = zi, yi
        self._spectrum_np = block.astype(np.complex64) if self.device.type == "cpu" else None

        self._tpl = torch.as_tensor(template.data, device=self.device)[None, None]
        self._mask = torch.as_tensor(template.mask, device=self.device)
        self._weights = torch.as_tensor(template.weights.astype(np.float32), device=self.device)

    def _rolled(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` (on the padded grid) rolled by the template's half box, so that a
        correlation's value at ``s`` is that of the template centred on voxel ``s``."""
        c = self.template.size // 2
        return np.roll(volume, (c, c, c), axis=(0, 1, 2))

    def _local_stats(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mask weight inside the tomogram ``N_O`` and the standard deviation ``sigma_O`` of the
        band-passed tomogram over it, for ``mask`` centred at each voxel ((Z, Y, X) each)."""
        import scipy.fft as sfft

        n = mask.shape[0]
        nz, ny, nx = self.shape
        padded = np.zeros(self.fft_shape, dtype=np.float64)
        padded[:n, :n, :n] = mask
        m_spec = np.conj(sfft.rfftn(padded))

        def under_mask(volume: np.ndarray) -> np.ndarray:
            spec = sfft.rfftn(self._rolled(volume))
            return sfft.irfftn(m_spec * spec, s=self.fft_shape)[:nz, :ny, :nx]

        padded[:] = 0.0
        padded[:nz, :ny, :nx] = 1.0
        # the support's correlation is exact up to FFT rounding: clip it to [0, N_M]
        overlap = np.clip(under_mask(padded), 0.0, float(mask.sum()))
        padded[:nz, :ny, :nx] = self.filtered[:nz, :ny, :nx]
        safe = np.maximum(overlap, 1e-9)
        mean = under_mask(padded) / safe
        sq = under_mask(padded * padded) / safe
        sigma = np.sqrt(np.clip(sq - mean * mean, 0.0, None))
        return overlap.astype(np.float32), sigma.astype(np.float32)

    # Template preparation -----------------------------------------------------------------
    def prepare(self, matrices: np.ndarray):
        """(B, n, n, n) torch templates for orientations (B, 3, 3): rotated, Fourier-weighted,
        normalised under the (rotated) mask, signed for the tomogram's contrast."""
        import torch
        import torch.nn.functional as F

        mats = torch.as_tensor(np.asarray(matrices, dtype=np.float32).reshape(-1, 3, 3),
                               device=self.device)
        b, n = mats.shape[0], self.template.size
        theta = torch.zeros(b, 3, 4, device=self.device)
        theta[:, :, :3] = mats.transpose(1, 2)  # output offset -> template offset, x y z
        grid = F.affine_grid(theta, [b, 1, n, n, n], align_corners=True)
        rot = F.grid_sample(self._tpl.expand(b, 1, n, n, n), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=True)[:, 0]
        spec = torch.fft.rfftn(rot, dim=(-3, -2, -1)) * self._weights
        filt = torch.fft.irfftn(spec, s=(n, n, n), dim=(-3, -2, -1))
        if self.template.rotate_mask:
            mask = F.grid_sample(self._mask.expand(b, 1, n, n, n), grid, mode="bilinear",
                                 padding_mode="zeros", align_corners=True)[:, 0]
        else:
            mask = self._mask.expand(b, n, n, n)
        dims = (-3, -2, -1)
        msum = mask.sum(dims, keepdim=True)
        mean = (filt * mask).sum(dims, keepdim=True) / msum
        centred = (filt - mean) * mask
        var = (centred * (filt - mean)).sum(dims, keepdim=True) / msum
        scale = self.template.sign / torch.sqrt(torch.clamp(var, min=1e-30))
        return centred * scale

    # Global search --------------------------------------------------------------------------
    def correlate(self, templates, normalise: bool = True):
        """(B, Z, Y, X) NCC maps of prepared templates (B, n, n, n) over the whole tomogram
        (``normalise=False``: the numerators, before the division by the local std).

        The pruned transforms run in torch.fft on a GPU and in scipy.fft (pocketfft) on the
        CPU, where it was measured faster than torch's CPU FFT; the steps are the same.
        """
        import torch

        nz, ny, nx = self.shape
        lz, ly, lx = self.fft_shape
        b = templates.shape[0]
        if self.device.type == "cpu":
            import scipy.fft as sfft

            t = templates.numpy()
            a = sfft.rfft(t, n=lx, axis=-1)[..., :self.n_kx]
            a = sfft.fft(a, n=ly, axis=-2)[..., self._yi_np, :]
            a = sfft.fft(a, n=lz, axis=-3)[:, self._zi_np]
            a = np.conj(a, out=a)
            a *= self._spectrum_np
            zfull = np.zeros((b, lz, a.shape[-2], self.n_kx), dtype=np.complex64)
            zfull[:, self._zi_np] = a
            d = sfft.ifft(zfull, axis=-3, overwrite_x=True)
            yfull = np.zeros((b, nz, ly, self.n_kx), dtype=np.complex64)
            yfull[:, :, self._yi_np] = d[:, :nz]
            del d, zfull, a
            e = sfft.ifft(yfull, axis=-2, overwrite_x=True)[:, :, :ny]
            raw = torch.from_numpy(sfft.irfft(e, n=lx, axis=-1)[..., :nx])
            return raw * self.inv_norm if normalise else raw
        a = torch.fft.rfft(templates, n=lx, dim=-1)[..., :self.n_kx]
        a = torch.fft.fft(a, n=ly, dim=-2).index_select(-2, self.yi)
        a = torch.fft.fft(a, n=lz, dim=-3).index_select(-3, self.zi)
        a = a.conj_physical() * self.spectrum
        zfull = a.new_zeros((b, lz, a.shape[-2], self.n_kx)).index_copy_(1, self.zi, a)
        del a
        d = torch.fft.ifft(zfull, dim=-3)[:, :nz]
        del zfull
        yfull = d.new_zeros((b, nz, ly, self.n_kx)).index_copy_(2, self.yi, d)
        del d
        e = torch.fft.ifft(yfull, dim=-2)[:, :, :ny]
        del yfull
        raw = torch.fft.irfft(e, n=lx, dim=-1)[..., :nx]
        return raw * self.inv_norm if normalise else raw

    def default_batch(self) -> int:
        """Orientations per batch: one on the CPU (measured fastest: the bookkeeping stays in
        place), about 8 M score voxels on a GPU."""
        if self.device.type == "cpu":
            return 1
        return int(max(1, min(16, 8_000_000 // int(np.prod(self.shape)))))

    def search(self, matrices: np.ndarray, batch: int | None = None,
               checkpoint: Path | None = None, fingerprint: str = "",
               checkpoint_every_s: float = 60.0, progress: ProgressFn | None = None,
               stop_after: int | None = None) -> SearchResult:
        """Best score and orientation index per voxel over ``matrices`` (N, 3, 3).

        With ``checkpoint``, the running maxima are saved there every ``checkpoint_every_s``
        seconds and when interrupted (KeyboardInterrupt), and a matching checkpoint (same
        ``fingerprint``) found at the start is resumed. ``stop_after``: search only the first
        that many orientations (for a timed subset). ``progress(done, total, seconds)``.
        """
        import torch

        total = len(matrices) if stop_after is None else min(len(matrices), int(stop_after))
        batch = batch or self.default_batch()
        state = load_checkpoint(checkpoint, fingerprint, self.shape) if checkpoint else None
        # The local std is the same for every orientation and positive, so the running
        # maximum is kept of the numerators and divided once at the end; the score variance
        # for the cut-off is estimated on every 4th voxel along each axis.
        inv_sq = torch.square(self.inv_norm[::4, ::4, ::4])
        n_sub = int((inv_sq > 0).sum())
        if state is None:
            best = torch.zeros(self.shape, device=self.device)
            index = torch.full(self.shape, -1, dtype=torch.int32, device=self.device)
            done, sum_sq, count = 0, 0.0, 0
        else:
            best = torch.as_tensor(state.scores, device=self.device)
            index = torch.as_tensor(state.index, device=self.device)
            done, sum_sq, count = state.done, state.sum_sq, state.count
        better = torch.zeros(self.shape, dtype=torch.bool, device=self.device)
        started, resumed_at, last_save = time.monotonic(), done, time.monotonic()

        def snapshot(final: bool) -> SearchResult:
            if not final:
                return SearchResult(best.cpu().numpy(), index.cpu().numpy(), done, sum_sq,
                                    count)
            scores = best * self.inv_norm
            idx = torch.where(self.inv_norm > 0, index, torch.full_like(index, -1))
            return SearchResult(scores.cpu().numpy(), idx.cpu().numpy(), done, sum_sq, count)

        try:
            with torch.inference_mode():
                while done < total:
                    stop = min(done + batch, total)
                    raw = self.correlate(self.prepare(matrices[done:stop]), normalise=False)
                    # in place: fresh 100 MB arrays per orientation cost more in page
                    # faults than the comparisons themselves
                    if stop - done == 1:
                        torch.gt(raw[0], best, out=better)
                        index.masked_fill_(better, done)
                    else:
                        top, arg = raw.max(dim=0)
                        torch.gt(top, best, out=better)
                        index[better] = arg[better].to(torch.int32) + done
                    torch.maximum(best, raw.amax(dim=0) if stop - done > 1 else raw[0],
                                  out=best)
                    sub = raw[:, ::4, ::4, ::4]
                    sum_sq += float((torch.square(sub) * inv_sq).sum(dtype=torch.float64))
                    count += n_sub * (stop - done)
                    done = stop
                    del raw, sub
                    now = time.monotonic()
                    if progress is not None:
                        progress(done - resumed_at, total - resumed_at, now - started)
                    if checkpoint and now - last_save > checkpoint_every_s and done < total:
                        save_checkpoint(checkpoint, fingerprint, snapshot(False))
                        last_save = now
        except KeyboardInterrupt:
            if checkpoint:
                save_checkpoint(checkpoint, fingerprint, snapshot(False))
            raise
        return snapshot(True)

    # Local search ---------------------------------------------------------------------------
    def _patches(self, centres_zyx: np.ndarray, shift: int):
        """Spectra of the band-passed tomogram around ``centres`` and the normalisation there."""
        import torch

        if shift > LOCAL_SHIFT:
            raise ValueError(f"local search shift {shift} > {LOCAL_SHIFT} voxels")
        n, c = self.template.size, self.template.size // 2
        size = n + 2 * shift
        inv = np.pad(self.inv_norm.cpu().numpy(), shift)
        s = 2 * shift + 1
        patches = np.empty((len(centres_zyx), size, size, size), dtype=np.float32)
        norms = np.empty((len(centres_zyx), s, s, s), dtype=np.float32)
        offsets = np.arange(size) - c - shift
        for i, (z, y, x) in enumerate(np.asarray(centres_zyx, dtype=int)):
            # indices before 0 wrap into the zero padding after the tomogram
            zi, yi, xi = ((v + offsets) % m for v, m in zip((z, y, x), self.fft_shape))
            patches[i] = self.filtered[np.ix_(zi, yi, xi)]
            norms[i] = inv[z:z + s, y:y + s, x:x + s]
        spec = torch.fft.rfftn(torch.as_tensor(patches, device=self.device), dim=(-3, -2, -1))
        return spec, torch.as_tensor(norms, device=self.device), size

    def local_search(self, centres_xyz: np.ndarray, matrices: np.ndarray, shift: int = 1,
                     batch_voxels: int = 16_000_000) -> tuple[np.ndarray, np.ndarray]:
        """Best NCC within ``shift`` voxels of each centre, for each candidate orientation.

        Args:
            centres_xyz: (P, 3) integer positions ``x, y, z`` (voxels).
            matrices: (K, 3, 3) orientations tried at every centre, or (P, K, 3, 3) per centre.
            shift: half-width (voxels) of the cube of positions tried around each centre.
        Returns:
            scores (P, K) and the best shifts (P, K, 3) ``dx, dy, dz`` in voxels.
        """
        import torch

        centres_zyx = np.asarray(centres_xyz, dtype=int).reshape(-1, 3)[:, ::-1]
        p = len(centres_zyx)
        mats = np.asarray(matrices, dtype=np.float32)
        shared = mats.ndim == 3
        k = mats.shape[0] if shared else mats.shape[1]
        spec, norms, size = self._patches(centres_zyx, shift)
        s = 2 * shift + 1
        scores = np.empty((p, k), dtype=np.float32)
        arg = np.empty((p, k), dtype=np.int64)
        per = size ** 3
        with torch.inference_mode():
            if shared:
                step = max(1, batch_voxels // (per * p))
                for lo in range(0, k, step):
                    hi = min(k, lo + step)
                    t = torch.fft.rfftn(self.prepare(mats[lo:hi]), s=(size,) * 3,
                                        dim=(-3, -2, -1)).conj_physical()
                    corr = torch.fft.irfftn(t[:, None] * spec[None], s=(size,) * 3,
                                            dim=(-3, -2, -1))[..., :s, :s, :s] * norms[None]
                    top, where = corr.reshape(hi - lo, p, -1).max(dim=-1)
                    scores[:, lo:hi] = top.T.cpu().numpy()
                    arg[:, lo:hi] = where.T.cpu().numpy()
            else:
                flat = mats.reshape(p * k, 3, 3)
                owner = torch.as_tensor(np.repeat(np.arange(p), k), device=self.device)
                step = max(1, batch_voxels // per)
                out_s, out_a = np.empty(p * k, np.float32), np.empty(p * k, np.int64)
                for lo in range(0, p * k, step):
                    hi = min(p * k, lo + step)
                    t = torch.fft.rfftn(self.prepare(flat[lo:hi]), s=(size,) * 3,
                                        dim=(-3, -2, -1)).conj_physical()
                    who = owner[lo:hi]
                    corr = torch.fft.irfftn(t * spec[who], s=(size,) * 3,
                                            dim=(-3, -2, -1))[..., :s, :s, :s] * norms[who]
                    top, where = corr.reshape(hi - lo, -1).max(dim=-1)
                    out_s[lo:hi], out_a[lo:hi] = top.cpu().numpy(), where.cpu().numpy()
                scores, arg = out_s.reshape(p, k), out_a.reshape(p, k)
        dz, rem = np.divmod(arg, s * s)
        dy, dx = np.divmod(rem, s)
        shifts = np.stack([dx, dy, dz], axis=-1) - shift
        return scores, shifts


# Checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path: Path, fingerprint: str, state: SearchResult) -> None:
    """Write the running maxima atomically (numpy .npz, no pickle)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, scores=state.scores, index=state.index, done=np.int64(state.done),
             sum_sq=np.float64(state.sum_sq), count=np.int64(state.count),
             fingerprint=np.array(fingerprint))
    os.replace(tmp, path)


def load_checkpoint(path: Path | None, fingerprint: str,
                    shape: tuple[int, ...]) -> SearchResult | None:
    """The saved state at ``path`` if it exists; ValueError if it belongs to another search."""
    if path is None or not Path(path).exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if str(z["fingerprint"]) != fingerprint or tuple(z["scores"].shape) != tuple(shape):
            raise ValueError(f"{path}: checkpoint of a different search (other tomogram, "
                             "template or settings); delete it to start afresh")
        return SearchResult(z["scores"].astype(np.float32), z["index"].astype(np.int32),
                            int(z["done"]), float(z["sum_sq"]), int(z["count"]))
