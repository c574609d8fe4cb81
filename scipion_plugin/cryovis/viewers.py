"""Viewer of "cryovis - render": its images in one matplotlib window, movie paths as titles."""

import os

import matplotlib.image as mpimg
from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .protocols import ProtCryovisRender


class CryovisRenderViewer(Viewer):
    """Shows every rendered tomogram of a "cryovis - render" run."""

    _label = "cryovis renderings"
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _targets = [ProtCryovisRender]

    def _visualize(self, obj, **kwargs):
        files = obj.renderedFiles()
        if not files:
            return [self.infoMessage("Nothing has been rendered yet.", "cryovis - render")]
        cols = min(len(files), 3)
        rows = (len(files) + cols - 1) // cols
        plotter = EmPlotter(x=rows, y=cols, mainTitle="cryovis - render", figsize=(6 * cols,
                                                                                    4 * rows))
        for key, png, movie in files:
            ax = plotter.createSubPlot(key, "", "")
            ax.imshow(mpimg.imread(png))
            ax.set_axis_off()
            if movie:
                ax.set_title(f"{key}\nmovie: {os.path.basename(movie)}")
        return [plotter]
