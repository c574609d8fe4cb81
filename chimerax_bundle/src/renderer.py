"""Our own volume renderer inside ChimeraX: a Model that ray-marches 3D textures in GLSL.

The textures hold the class probabilities (four per RGBA8 texture), the inverted low-passed
tomogram and the engine's precomputed illumination factor (ambient occlusion x soft shadows,
``cryoet_integration.rendering.illumination``). The transfer functions (ramp limits, raw
ramp, colours, opacity) are shader uniforms, so changing colours redraws at once; changes
that alter the opacity field recompute the illumination in the background first.

ChimeraX draws the model in its transparent pass. The shader draws the box's back faces,
finds each pixel's ray by unprojecting the fragment (perspective and orthographic cameras
alike), honours ChimeraX's clip planes (near/far/front/back/slab) and writes premultiplied
colour with coverage, blended with (ONE, ONE_MINUS_SRC_ALPHA).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from chimerax.core.models import Model

SHADERS = Path(__file__).parent / "shaders"
MAX_CLASSES = 8
MAX_PLANES = 8
# Texture units 0-3 are used by ChimeraX (textures, shadows, multishadow, colormaps).
UNITS = {"classes_lo": 5, "classes_hi": 6, "raw_light": 7}


@dataclasses.dataclass
class Look:
    """The per-frame parameters of a rendering (shader uniforms, no recomputation).

    Attributes:
        colors: ``(n, 3)`` RGB in [0, 1] per class.
        lows: left ramp limit per class in [0, 1).
        raw_ramp: (low, high) ramp on the normalised raw data.
        opacity: opacity per voxel of path of a fully selected voxel, (0, 1].
        illumination: use the AO x shadow factor.
        step: sample spacing along the rays, voxels.
    """

    colors: np.ndarray
    lows: list[float]
    raw_ramp: tuple[float, float] = (0.0, 1.0)
    opacity: float = 1.0
    illumination: bool = True
    step: float = 1.0


@dataclasses.dataclass
class Fields:
    """What goes into the 3D textures, arrays ``[z, y, x]``.

    Attributes:
        probs: class probabilities in [0, 1], one float32 array per class.
        raw01: inverted, low-passed, normalised tomogram in [0, 1].
        light: illumination factor (lao x ssc) in [0, 1].
    """

    probs: list[np.ndarray]
    raw01: np.ndarray
    light: np.ndarray

    def texture_arrays(self) -> dict[str, np.ndarray]:
        """``(nz, ny, nx, 4)`` uint8 arrays per texture (probabilities rounded to 1/255)."""
        def u8(a: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)

        shape = self.raw01.shape
        out = {}
        for name, first in (("classes_lo", 0), ("classes_hi", 4)):
            arr = np.zeros(shape + (4,), np.uint8)
            for c, p in enumerate(self.probs[first:first + 4]):
                arr[..., c] = u8(p)
            out[name] = arr
        rl = np.zeros(shape + (4,), np.uint8)
        rl[..., 0] = u8(self.raw01)
        rl[..., 1] = u8(self.light)
        out["raw_light"] = rl
        return out


def box_triangles(shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """``(36, 3)`` float32 vertices (i, j, k) of the box ``[-0.5, n - 0.5]``, 12 triangles
    wound counter-clockwise seen from outside."""
    nz, ny, nx = shape_zyx
    lo, hi = -0.5, np.array([nx, ny, nz], float) - 0.5
    c = np.array([[hi[0] if i & 1 else lo, hi[1] if i & 2 else lo, hi[2] if i & 4 else lo]
                  for i in range(8)], np.float32)
    faces = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    tri = [[f[0], f[1], f[2], f[0], f[2], f[3]] for f in faces]
    return c[np.array(tri).ravel()]


class RayMarchedVolume(Model):
    """The rendering of one tomogram with its class maps (``cryovis render``).

    Args:
        session: the ChimeraX session.
        tomogram: the ChimeraX Volume whose grid the fields follow (position and voxel
            size come from it, so the rendering moves with the tomogram).
        fields: the texture contents.
        look: colours and transfer functions.
    """

    SESSION_SAVE = False

    def __init__(self, session, tomogram, fields: Fields, look: Look, class_models=()):
        super().__init__(f"cryovis render {tomogram.name}", session)
        self.tomogram = tomogram
        self.class_models = list(class_models)
        self.look = look
        self.settings = None  # the engine's RenderSettings it was computed with
        self.scene = None  # the engine's Scene (for the CPU reference and thresholds)
        self._fields_pending: Fields | None = fields
        self._shape = fields.raw01.shape
        self._textures: dict = {}
        self._program = None
        self._vao = None
        self._vbo = None
        self.gl_error: str | None = None
        self.upload_s: float | None = None  # seconds of the last texture upload (s)

    # -- geometry ChimeraX asks for -------------------------------------------------------
    def ijk_to_scene(self):
        """Voxel indices -> scene coordinates (a ChimeraX Place)."""
        return self.tomogram.scene_position * self.tomogram.data.ijk_to_xyz_transform

    def _corners_scene(self) -> np.ndarray:
        nz, ny, nx = self._shape
        corners = np.array([[i, j, k] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5)
                            for k in (-0.5, nz - 0.5)], np.float32)
        return self.ijk_to_scene().transform_points(corners)

    def bounds(self):
        """Scene bounds of the box (the drawing follows the tomogram, not its own position)."""
        if not self.display:
            return None
        from chimerax.geometry import point_bounds
        return point_bounds(self._corners_scene())

    def geometry_bounds(self):
        from chimerax.geometry import point_bounds
        return point_bounds(self.scene_position.inverse().transform_points(
            self._corners_scene()))

    def first_intercept(self, mxyz1, mxyz2, exclude=None):
        return None  # picking the rendering itself selects nothing

    def drawings_for_each_pass(self, pass_drawings):
        if self.display and self.gl_error is None:
            pass_drawings.setdefault(self.TRANSPARENT_DRAW_PASS, []).append(self)

    def set_fields(self, fields: Fields) -> None:
        """New texture contents (uploaded at the next draw)."""
        self._fields_pending = fields
        self._shape = fields.raw01.shape
        self.redraw_needed()

    def set_look(self, look: Look) -> None:
        self.look = look
        self.redraw_needed()

    # -- drawing ----------------------------------------------------------------------------
    def draw(self, renderer, draw_pass):
        if not self.display or draw_pass != self.TRANSPARENT_DRAW_PASS or self.gl_error:
            return
        from OpenGL import GL
        try:
            self._ensure_gl()
        except Exception as exc:  # noqa: BLE001 - reported once; ChimeraX keeps drawing
            from .engine import one_line
            self.gl_error = one_line(exc)
            self.session.logger.error(f"cryovis render: OpenGL ray marcher unavailable "
                                      f"({self.gl_error}); use 'cryovis render ... cpu true'")
            return
        look = self.look
        pid = self._program.program_id
        GL.glUseProgram(pid)
        renderer.opengl_context.current_shader_program = None  # ChimeraX rebinds its own next

        def loc(name):
            return GL.glGetUniformLocation(pid, name)

        projection = np.array(renderer.current_projection_matrix, np.float64).T
        model_view = _m44(renderer.current_view_matrix * self.ijk_to_scene())
        ijk_to_clip = projection @ model_view
        GL.glUniformMatrix4fv(loc("ijk_to_clip"), 1, GL.GL_TRUE, ijk_to_clip.astype(np.float32))
        GL.glUniformMatrix4fv(loc("clip_to_ijk"), 1, GL.GL_TRUE,
                              np.linalg.inv(ijk_to_clip).astype(np.float32))
        vx, vy, vw, vh = renderer.current_viewport
        GL.glUniform4f(loc("viewport"), vx, vy, vw, vh)
        nz, ny, nx = self._shape
        GL.glUniform3f(loc("grid_size"), nx, ny, nz)
        n = len(look.lows)
        colors = np.zeros((MAX_CLASSES, 3), np.float32)
        colors[:n] = look.colors
        lows = np.zeros(MAX_CLASSES, np.float32)
        lows[:n] = look.lows
        GL.glUniform1i(loc("n_classes"), n)
        GL.glUniform3fv(loc("colors"), MAX_CLASSES, colors)
        GL.glUniform1fv(loc("lows"), MAX_CLASSES, lows)
        GL.glUniform2f(loc("raw_ramp"), *look.raw_ramp)
        GL.glUniform1f(loc("opacity"), look.opacity)
        GL.glUniform1f(loc("illumination_on"), 1.0 if look.illumination else 0.0)
        GL.glUniform1f(loc("step_voxels"), look.step)
        planes = self._clip_planes_ijk(renderer)
        GL.glUniform1i(loc("n_planes"), len(planes))
        if len(planes):
            GL.glUniform4fv(loc("planes"), len(planes), planes.astype(np.float32))
        for name, unit in UNITS.items():
            self._textures[name].bind_texture(unit)
            GL.glUniform1i(loc(name), unit)

        for i in range(MAX_PLANES):  # our vertex shader writes no clip distances
            GL.glDisable(GL.GL_CLIP_DISTANCE0 + i)
        # Only the back faces: one fragment per pixel, also with the camera inside the box.
        # A mirroring transform turns the triangles' winding over.
        mirrored = np.linalg.det(model_view[:3, :3]) < 0
        GL.glEnable(GL.GL_CULL_FACE)
        GL.glCullFace(GL.GL_BACK if mirrored else GL.GL_FRONT)
        renderer.enable_blending(True)
        renderer.blend_alpha(False)
        renderer.write_depth(False)
        GL.glBindVertexArray(self._vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 36)
        GL.glBindVertexArray(0)
        renderer.write_depth(True)
        renderer.blend_alpha(True)
        GL.glCullFace(GL.GL_BACK)
        GL.glDisable(GL.GL_CULL_FACE)
        for unit in UNITS.values():
            GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
            GL.glBindTexture(GL.GL_TEXTURE_3D, 0)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glUseProgram(0)

    def _clip_planes_ijk(self, renderer) -> np.ndarray:
        # ChimeraX keeps the active clip planes (scene coordinates, kept side dot >= 0) on the
        # renderer when the clip-plane capability is on.
        if not renderer.enable_capabilities & renderer.SHADER_CLIP_PLANES:
            return np.zeros((0, 4))
        planes = np.array(getattr(renderer, "_clip_planes", ()) or (), np.float64).reshape(-1, 4)
        return (planes @ _m44(self.ijk_to_scene()))[:MAX_PLANES]

    def _ensure_gl(self) -> None:
        from chimerax.graphics.opengl import Shader, Texture
        from OpenGL import GL
        if self._program is None:
            self._program = Shader(vertex_shader_path=str(SHADERS / "raymarch.vert"),
                                   fragment_shader_path=str(SHADERS / "raymarch.frag"))
            self._vao = GL.glGenVertexArrays(1)
            self._vbo = GL.glGenBuffers(1)
        if self._fields_pending is not None:
            started = time.perf_counter()
            arrays = self._fields_pending.texture_arrays()
            for name, arr in arrays.items():
                tex = self._textures.get(name)
                if tex is None:
                    tex = self._textures[name] = Texture(dimension=3, clamp_to_edge=True)
                tex.reload_texture(arr, now=True)
            GL.glBindVertexArray(self._vao)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._vbo)
            verts = box_triangles(self._shape)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, verts.nbytes, verts, GL.GL_STATIC_DRAW)
            attr = GL.glGetAttribLocation(self._program.program_id, "position")
            GL.glEnableVertexAttribArray(attr)
            GL.glVertexAttribPointer(attr, 3, GL.GL_FLOAT, GL.GL_FALSE, 0, None)
            GL.glBindVertexArray(0)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
            GL.glFinish()  # once per upload: makes upload_s the upload, not just its queueing
            self.upload_s = time.perf_counter() - started
            self._fields_pending = None

    def texture_bytes(self) -> int:
        """Bytes of the 3D textures (four RGBA8 channels each)."""
        return 3 * int(np.prod(self._shape)) * 4

    def delete(self):
        r = self.session.main_view.render
        if r is not None and (self._textures or self._program is not None):
            r.make_current()
            from OpenGL import GL
            for tex in self._textures.values():
                tex.delete_texture()
            if self._vao is not None:
                GL.glDeleteVertexArrays(1, [self._vao])
                GL.glDeleteBuffers(1, [self._vbo])
            if self._program is not None:
                GL.glDeleteProgram(self._program.program_id)
        self._textures = {}
        self._program = None
        super().delete()


def _m44(place) -> np.ndarray:
    m = np.eye(4)
    m[:3, :] = place.matrix
    return m
