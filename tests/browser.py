"""Render a page in headless Chromium and report what a reader would see: a screenshot,
the page's errors (script errors, failed resources, console.error) and its DOM."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
# Injected first into <head>: records errors, then writes them and the count of drawn
# plotly figures onto <html> once the page has loaded.
CAPTURE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push(String(e.message || ("failed to load " +
  (e.target && (e.target.src || e.target.href))))), true);
addEventListener("unhandledrejection", e => __errors.push(String(e.reason)));
const __consoleError = console.error.bind(console);
console.error = (...args) => {
  __errors.push(args.map(String).join(" "));
  __consoleError(...args);
};
addEventListener("load", () => setTimeout(() => {
  document.documentElement.setAttribute("data-errors", JSON.stringify(__errors));
  document.documentElement.setAttribute("data-plots",
    [...document.querySelectorAll(".js-plotly-plot")].filter(
      plot => plot.querySelector(".main-svg")).length);
}, 500));
</script>"""


@dataclass(frozen=True)
class Rendered:
    screenshot: np.ndarray  # (H, W, 3) BGR
    errors: list[str]
    plots_drawn: int
    dom: str


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}",
                           "--virtual-time-budget=20000", *args], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "HOME": str(tmp)})


def render(page: Path, tmp: Path, size: tuple[int, int] = (1280, 2400)) -> Rendered:
    """Load ``page`` (a copy with CAPTURE injected) once for the DOM and once for a PNG."""
    tmp.mkdir(parents=True, exist_ok=True)
    probe = page.parent / f".probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + CAPTURE, 1),
                     encoding="utf-8")
    try:
        dom = _chromium(tmp, "--dump-dom", probe.as_uri()).stdout
        shot = tmp / "screenshot.png"
        _chromium(tmp, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}",
                  probe.as_uri())
    finally:
        probe.unlink()
    errors = re.search(r'data-errors="([^"]*)"', dom)
    plots = re.search(r'data-plots="(\d+)"', dom)
    if errors is None or plots is None or not shot.is_file():
        raise AssertionError(f"the page did not finish loading in Chromium:\n{dom[:500]}")
    return Rendered(cv2.imread(str(shot)), json.loads(errors.group(1).replace("&quot;", '"')),
                    int(plots.group(1)), dom)
