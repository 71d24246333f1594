"""pyqtgraph settings for every plot of the app (imported by each plotting view)."""

from __future__ import annotations

import pyqtgraph as pg

# OpenGL off: software rendering is fast enough for these plots and works everywhere (VMs, offscreen).
pg.setConfigOptions(useOpenGL=False, antialias=True, background="w", foreground="#374151", imageAxisOrder="row-major")
