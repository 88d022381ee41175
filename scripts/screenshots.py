"""Screenshots of notebooks opened in JupyterLab (light and dark theme) on a finished run, for the README.

    python scripts/screenshots.py --repo . --out docs/img
    python scripts/screenshots.py --report runs/demo/report.html --out docs/img   # the research report only

Starts JupyterLab on loopback (a token, a free port) in ``--repo``, a checkout with a finished ``make demo`` run
(``runs/demo/default``: the notebooks opened by hand read it), opens each notebook in Chromium, runs all its cells,
scrolls to its main widget and saves ``<notebook>_<theme>.png``. Stops the server by its PID.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# notebook -> the element the screenshot shows
TARGETS = {"03_mc_rewards": ".iprkit-toolbar", "04_pairs": "text=Instruction:"}
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
REPORT = {"report_results": "h3:has-text('Results')", "report_step_rewards": "h3:has-text('Step rewards')",
          "report_pairs": "h3:has-text('Pairs')"}
"""report.html: screenshot name -> the heading it starts at."""
TOKEN = "iprkit-screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


@contextmanager
def jupyterlab(root: Path) -> Iterator[str]:
    """JupyterLab serving ``root`` on loopback (a token, a free port); yields its base URL; stopped by its PID.
    Its user settings and workspaces live in a temporary folder: the theme set here never touches the user's, and
    every start is a fresh profile (as on CI)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.TemporaryDirectory(prefix="iprkit-lab-")
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
                            f"--LabApp.user_settings_dir={profile.name}/settings",
                            f"--LabApp.workspaces_dir={profile.name}/workspaces",
                            *(["--allow-root"] if os.geteuid() == 0 else [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                api(base, "/api/status")
                break
            except OSError:
                time.sleep(1)
        # no autosave: the notebooks opened keep no outputs on disk, and no "file changed" dialog blocks a click
        api(base, "/lab/api/settings/@jupyterlab/docmanager-extension:plugin", "PUT",
            {"raw": json.dumps({"autosave": False})})
        api(base, "/lab/api/settings/@jupyterlab/apputils-extension:notification", "PUT",
            {"raw": json.dumps({"fetchNews": "false"})})  # no "news?" notice over the screenshots
        yield base
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
        profile.cleanup()


def chromium(p):
    return p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])


def run_notebook(browser, base: str, path: str, theme: str, wait_for: str, timeout_s: int = 600):
    """Open the notebook ``path`` (relative to the server's root) in ``theme``, run all its cells, and wait for
    ``wait_for`` to appear; returns the page (a screenshot of the failure is left beside the others on timeout)."""
    api(base, "/lab/api/settings/@jupyterlab/apputils-extension:themes", "PUT",
        {"raw": json.dumps({"theme": THEMES[theme]})})
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lab/tree/{path}?token={TOKEN}&reset")
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    # On a fresh profile JupyterLab may report the kernel idle before the notebook's cells are in place, and a
    # "Run All Cells" sent then runs nothing: click it until a cell shows that it ran or is queued.
    started = "[...document.querySelectorAll('.jp-InputPrompt')].some(e => /\\[[0-9*]+\\]/.test(e.innerText))"
    for attempt in range(5):
        for _ in range(3):  # a dialog would take the clicks: take the kernel offered (Python 3), close any other
            if not page.locator(".jp-Dialog").count():
                break
            text = page.inner_text(".jp-Dialog")
            print(f"{path}: JupyterLab asked: {text[:200]!r}", flush=True)
            if "Select Kernel" in text:
                page.click(".jp-Dialog .jp-mod-accept")
            else:
                page.keyboard.press("Escape")
            page.wait_for_timeout(500)
        page.click("text=Run", timeout=30_000)  # the menu bar
        page.click("text=Run All Cells")
        try:
            page.wait_for_function(started, timeout=15_000)
            break
        except Exception:
            if attempt == 4:
                raise
    try:
        page.wait_for_selector(wait_for, timeout=timeout_s * 1000)
    except Exception as e:  # playwright's TimeoutError: say what the page shows instead
        shot = Path(os.environ.get("IPRKIT_SHOTS", "test-artifacts")) / f"failed_{Path(path).stem}_{theme}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        shown = page.eval_on_selector_all(".jp-Cell", "cs => cs.map(c => c.innerText.slice(0, 800))")
        dialogs = page.eval_on_selector_all(".jp-Dialog, .Toastify__toast", "ds => ds.map(d => d.innerText)")
        raise RuntimeError(f"{path} ({theme}): {wait_for!r} did not appear within {timeout_s} s; screenshot {shot}; "
                           f"dialogs/notices: {dialogs}; cells:\n" + "\n---\n".join(shown)) from e
    return page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=".", help="a checkout with a finished make demo run")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--timeout", type=int, default=600, help="seconds to wait for a notebook's cells")
    ap.add_argument("--report", help="a run's report.html: screenshot its sections (offline) instead of notebooks")
    a = ap.parse_args()
    repo, out = Path(a.repo).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.report:
        return report_shots(Path(a.report).resolve(), out)
    from playwright.sync_api import sync_playwright

    with jupyterlab(repo) as base, sync_playwright() as p:
        browser = chromium(p)
        for theme in THEMES:
            for nb, target in TARGETS.items():
                page = run_notebook(browser, base, f"notebooks/{nb}.ipynb", theme, target, a.timeout)
                page.wait_for_timeout(3000)
                page.locator(target).first.scroll_into_view_if_needed()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(out / f"{nb}_{theme}.png"))
                print(out / f"{nb}_{theme}.png", flush=True)
                page.close()
        browser.close()


def report_shots(report: Path, out: Path) -> None:
    """The report opened from disk with networking off (it is one offline file); one picture per section."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.context.set_offline(True)
        page.goto(report.as_uri())
        page.wait_for_timeout(3000)  # plotly draws
        for name, heading in REPORT.items():
            page.locator(heading).first.evaluate("e => e.scrollIntoView()")
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / f"{name}.png"))
            print(out / f"{name}.png", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
