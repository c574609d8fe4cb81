"""Masked, locally normalised FFT cross-correlation of a template over many orientations.

The score at position ``s`` for orientation ``R`` is the normalised cross-correlation

    NCC(s, R) = sum_x T_R(x) f(s + x) / (sum_x M(x) * sigma_M(s))

where ``f`` is the band-passed tomogram, ``T_R`` the rotated template after its Fourier
weighting (band-pass, missing wedge, CTF) normalised to zero mean and unit variance under the
mask ``M`` (and set to zero outside it), and ``sigma_M(s)`` the standard deviation of ``f``
under the mask around ``s`` (computed once with two FFT correlations). It lies in [-1, 1].

Speed: the tomogram spectrum is computed once and kept only inside the band-pass cube
(``|k| < low_pass``); per orientation the template's transform is *pruned* (the zero padding
of the n^3 template is never transformed: x lines only where the template is, y and z lines
only at the kept frequencies) and the inverse transform skips the lines that are zero
outside the band. At the default low-pass (0.25 cycles/voxel) this does about a third of the
work of one full forward and inverse FFT and gives the same numbers. Orientations are
batched; everything runs in float32 torch on the CPU or a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .filters import bandpass, radial_frequency, sphere

ProgressFn = Callable[[int, int, float], None]


@dataclasses.dataclass
class PreparedTemplate:
    """A template ready for matching (all on the tomogram's voxel grid).

    Attributes:
        data: (n, n, n) float32 density, odd ``n``, centre voxel ``n // 2``, positive = dense.
        mask: (n, n, n) float32 weights in [0, 1] under which scores are normalised.
        weights: (n, n, n // 2 + 1) Fourier weights applied after each rotation.
        sign: -1.0 when particles are dark in the tomogram (raw cryo-ET), +1.0 if light.
        rotate_mask: the mask is not a ball, so it turns with the template.
        radius: particle radius in voxels (peak exclusion, tomogram border).
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
        scores: (Z, Y, X) best NCC over the searched orientations (0 at the border); in a
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


def resolve_device(device: str | None = None):
    """torch device: ``device`` if given, else CUDA when torch sees a GPU, else the CPU."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown torch device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return dev


def _workers() -> int:
    """scipy.fft workers: as many as torch's threads, so one setting governs both."""
    import torch

    return max(1, torch.get_num_threads())


def _kept(freqs: np.ndarray, k_max: float) -> np.ndarray:
    return np.flatnonzero(np.abs(freqs) < k_max)


class TemplateMatcher:
    """One tomogram and one template: global and local orientation searches.

    Args:
        tomogram: (Z, Y, X) array.
        template: the prepared template.
        low_pass: band-pass upper edge, cycles/voxel (None: up to Nyquist).
        high_pass: band-pass lower edge, cycles/voxel (None: keep all but the mean).
        device: torch device name or None for automatic.
        border: voxels at each face where no score is computed (default: the particle radius,
            where the correlation would wrap around).
    """

    def __init__(self, tomogram: np.ndarray, template: PreparedTemplate,
                 low_pass: float | None = 0.25, high_pass: float | None = None,
                 device: str | None = None, border: int | None = None) -> None:
        import scipy.fft as sfft
        import torch

        self.device = resolve_device(device)
        self.template = template
        self.shape = tuple(int(s) for s in tomogram.shape)
        n, c = template.size, template.size // 2
        if any(s < n for s in self.shape):
            raise ValueError(f"template box {n} is larger than the tomogram {self.shape[::-1]}")
        f = np.asarray(tomogram, dtype=np.float32)
        spec = sfft.rfftn(f - np.float32(f.mean()), workers=_workers())
        spec *= bandpass(radial_frequency(self.shape), low_pass, high_pass).astype(np.float32)
        self.filtered = sfft.irfftn(spec, s=self.shape, workers=_workers()).astype(
            np.float32)
        del spec

        # Local statistics under a ball (the mask itself when it does not turn with R).
        stat_mask = template.mask
        if template.rotate_mask:
            volume = float(template.mask.sum())
            stat_mask = sphere(n, (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0))
        self.mask_sum = float(template.mask.sum())
        sigma = self._local_std(stat_mask)
        self.border = int(np.ceil(template.radius)) if border is None else int(border)
        valid = np.zeros(self.shape, dtype=bool)
        b = self.border
        valid[b:self.shape[0] - b, b:self.shape[1] - b, b:self.shape[2] - b] = True
        floor = 1e-6 * float(np.median(sigma[valid])) if valid.any() else 0.0
        valid &= sigma > floor
        inv = np.zeros(self.shape, dtype=np.float32)
        inv[valid] = 1.0 / (self.mask_sum * sigma[valid])
        self.n_valid = int(valid.sum())
        self.inv_norm = torch.as_tensor(inv, device=self.device)

        # Tomogram spectrum (shifted so the score lands on the template centre), kept only in
        # the cube of frequencies the band-pass lets through.
        k_max = 0.5 + 1e-9 if low_pass is None else float(low_pass)
        zf, yf, xf = (np.fft.fftfreq(self.shape[0]), np.fft.fftfreq(self.shape[1]),
                      np.fft.rfftfreq(self.shape[2]))
        zi, yi = _kept(zf, k_max), _kept(yf, k_max)
        self.n_kx = int(len(_kept(xf, k_max)))
        rolled = np.roll(self.filtered, (c, c, c), axis=(0, 1, 2))
        full = sfft.rfftn(rolled, workers=_workers())
        block = full[zi][:, yi][:, :, :self.n_kx]
        del full, rolled
        self.spectrum = torch.as_tensor(block.astype(np.complex64), device=self.device)
        self.zi = torch.as_tensor(zi, device=self.device)
        self.yi = torch.as_tensor(yi, device=self.device)
        self._zi_np, self._yi_np = zi, yi
        self._spectrum_np = block.astype(np.complex64) if self.device.type == "cpu" else None

        self._tpl = torch.as_tensor(template.data, device=self.device)[None, None]
        self._mask = torch.as_tensor(template.mask, device=self.device)
        self._weights = torch.as_tensor(template.weights.astype(np.float32), device=self.device)

    def _local_std(self, mask: np.ndarray) -> np.ndarray:
        """Standard deviation of the band-passed tomogram under ``mask`` centred at each voxel."""
        import scipy.fft as sfft

        n, c = mask.shape[0], mask.shape[0] // 2
        w = _workers()
        padded = np.zeros(self.shape, dtype=np.float64)
        padded[:n, :n, :n] = mask
        m_spec = np.conj(sfft.rfftn(padded, workers=w))
        total = float(mask.sum())
        f = np.roll(self.filtered.astype(np.float64), (c, c, c), axis=(0, 1, 2))
        mean = sfft.irfftn(m_spec * sfft.rfftn(f, workers=w), s=self.shape, workers=w) / total
        sq = sfft.irfftn(m_spec * sfft.rfftn(f * f, workers=w), s=self.shape, workers=w) / total
        return np.sqrt(np.clip(sq - mean * mean, 0.0, None)).astype(np.float32)

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
        b = templates.shape[0]
        if self.device.type == "cpu":
            import scipy.fft as sfft

            w = _workers()
            t = templates.numpy()
            a = sfft.rfft(t, n=nx, axis=-1, workers=w)[..., :self.n_kx]
            a = sfft.fft(a, n=ny, axis=-2, workers=w)[..., self._yi_np, :]
            a = sfft.fft(a, n=nz, axis=-3, workers=w)[:, self._zi_np]
            a = np.conj(a, out=a)
            a *= self._spectrum_np
            zfull = np.zeros((b, nz, a.shape[-2], self.n_kx), dtype=np.complex64)
            zfull[:, self._zi_np] = a
            d = sfft.ifft(zfull, axis=-3, workers=w, overwrite_x=True)
            yfull = np.zeros((b, nz, ny, self.n_kx), dtype=np.complex64)
            yfull[:, :, self._yi_np] = d
            del d, zfull, a
            raw = torch.from_numpy(sfft.irfft(sfft.ifft(yfull, axis=-2, workers=w,
                                                        overwrite_x=True),
                                              n=nx, axis=-1, workers=w))
            return raw * self.inv_norm if normalise else raw
        a = torch.fft.rfft(templates, n=nx, dim=-1)[..., :self.n_kx]
        a = torch.fft.fft(a, n=ny, dim=-2).index_select(-2, self.yi)
        a = torch.fft.fft(a, n=nz, dim=-3).index_select(-3, self.zi)
        a = a.conj_physical() * self.spectrum
        zfull = a.new_zeros((b, nz, a.shape[-2], self.n_kx)).index_copy_(1, self.zi, a)
        del a
        d = torch.fft.ifft(zfull, dim=-3)
        del zfull
        yfull = d.new_zeros((b, nz, ny, self.n_kx)).index_copy_(2, self.yi, d)
        del d
        e = torch.fft.ifft(yfull, dim=-2)
        del yfull
        raw = torch.fft.irfft(e, n=nx, dim=-1)
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

        n, c = self.template.size, self.template.size // 2
        size = n + 2 * shift
        pad = c + shift
        f = np.pad(self.filtered, pad)
        inv = np.pad(self.inv_norm.cpu().numpy(), shift)
        s = 2 * shift + 1
        patches = np.empty((len(centres_zyx), size, size, size), dtype=np.float32)
        norms = np.empty((len(centres_zyx), s, s, s), dtype=np.float32)
        for i, (z, y, x) in enumerate(np.asarray(centres_zyx, dtype=int)):
            # padded index of voxel v is v + pad; the patch starts at centre - c - shift
            patches[i] = f[z:z + size, y:y + size, x:x + size]
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
