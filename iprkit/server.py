"""Rollouts from OpenAI-compatible LLM servers: :class:`OpenAIBackend`, behind the same seam as
:class:`~iprkit.backends.HFBackend`.

- The kit applies the chat template and the context budget itself (:class:`~iprkit.backends.Prompter`)
  and sends the prompt as token ids (``server.prompt=tokens``: exactly the in-process prompt) or as the
  template's text (``text``; the server tokenizes it again). The served folder's tokenizer is the kit's.
- Many replicas (``server.urls``, like the paper's rollout workers): each request goes to the replica with
  the fewest requests in flight. A failed request (connection refused, timeout, 5xx) is retried with
  exponential back-off on whichever replica is then best; a replica that fails ``retries`` times in a row
  is dropped with a message, and the episodes go on elsewhere. Only when every replica is gone does the
  stage fail. A 4xx answer is a bad request, not a sick server: it fails at once, with the server's words.
- Episodes advance independently (``independent = True``): the engine runs each in a thread of its own,
  which calls :meth:`OpenAIBackend.complete` for its next turn; the server batches continuously.
- Sampling: temperature, top-p and a seed per request (the engine's per-episode, per-turn seed), ``n``
  samples per request where the server supports it. Greedy turns are deterministic.
"""

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iprkit.backends import Prompter, context_budget, row_seeds
from iprkit.errors import IprkitError
from iprkit.settings import GenerationSettings, ServerSettings


class Replicas:
    """Base URLs of one model's servers: least-loaded choice, retries with back-off, dropping the dead."""

    def __init__(self, urls: list[str], retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 300.0):
        if not urls:
            raise IprkitError("server.urls: no server to send requests to; give base URLs or set server.launch=true.")
        self.alive = [u.rstrip("/") for u in urls]
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.load = {u: 0 for u in self.alive}
        self.fails = {u: 0 for u in self.alive}
        self.dropped: dict[str, str] = {}  # url -> last error
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}

    def _pick(self) -> str:
        with self.lock:
            if not self.alive:
                raise IprkitError("every LLM server replica stopped answering: " + "; ".join(
                    f"{u} ({why})" for u, why in self.dropped.items()) + ". Restart them (or give others in server.urls) "
                    "and rerun: finished stages are kept and the run resumes.")
            url = min(self.alive, key=lambda u: self.load[u])
            self.load[url] += 1
            return url

    def _failed(self, url: str, error: str) -> None:
        with self.lock:
            self.fails[url] += 1
            if self.fails[url] > self.retries and url in self.alive:
                self.alive.remove(url)
                self.dropped[url] = error
                left = len(self.alive)
                print(f"LLM server {url} dropped after {self.fails[url]} failed tries in a row (last: {error}); "
                      f"going on with {left} replica{'s' if left != 1 else ''}", flush=True)

    def post(self, path: str, body: dict) -> dict:
        """POST ``body`` as JSON to ``path`` on a live replica; its JSON answer."""
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            url = self._pick()
            try:
                req = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    answer = json.loads(r.read())
                with self.lock:
                    self.fails[url] = 0
                    self.stats["requests"] += 1
                return answer
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                if e.code < 500:
                    raise IprkitError(f"{url}{path} refused the request (HTTP {e.code}): {detail}") from None
                error = f"HTTP {e.code}: {detail[:200]}"
            except (OSError, http.client.HTTPException, json.JSONDecodeError) as e:  # refused, reset, timed out, torn
                error = f"{type(e).__name__}: {e}"
            finally:
                with self.lock:
                    self.load[url] -= 1
            self._failed(url, error)
            with self.lock:
                self.stats["retries"] += 1
            time.sleep(self.backoff_s * 2 ** min(attempt, 6))
            attempt += 1

    def get(self, url: str, path: str, timeout: float = 5.0) -> dict:
        with urllib.request.urlopen(url + path, timeout=timeout) as r:
            return json.loads(r.read())


def served_model(replicas: Replicas, model_dir: Path) -> str:
    """The name under which the servers serve the stage's model folder: its path (vLLM's default name for
    ``--model DIR``) or its folder name; a server that does not list its models is asked by path."""
    url = replicas.alive[0]
    try:
        ids = [m["id"] for m in replicas.get(url, "/v1/models")["data"]]
    except (OSError, KeyError, TypeError, ValueError):
        ids = []
    if not ids:  # transformers serve lists only its hub cache
        return str(model_dir)
    for name in (str(model_dir), str(model_dir.resolve()), model_dir.name):
        if name in ids:
            return name
    raise IprkitError(f"server.urls: {url} serves {ids}, not this stage's model {model_dir}; serve it under its path "
                      "(vllm: --model DIR or --served-model-name DIR) or set server.launch=true to let the kit start a "
                      "server on each stage's model.")


class OpenAIBackend:
    """Assistant turns from OpenAI-compatible completions servers (see the module's doc)."""

    independent = True

    def __init__(self, tokenizer, cfg: GenerationSettings, server: ServerSettings, urls: list[str],
                 model: str, window: int = 2048, owned=None):
        """``model``: the name the servers serve; ``window``: the model's context length; ``owned``: a
        launched server (:class:`iprkit.serving.LaunchedServer`) to stop on :meth:`close`."""
        self.tok, self.cfg, self.server, self.model, self.owned = tokenizer, cfg, server, model, owned
        self.replicas = Replicas(urls, server.retries, server.backoff_s, server.timeout_s)
        self.concurrency = server.concurrency
        self.budget = context_budget(cfg, window)
        self.stats = {"calls": 0, "sequences": 0, "prompt_tokens": 0, "new_tokens": 0, "context_drops": 0}
        self.prompter = Prompter(tokenizer, self.budget, self.stats)
        self._lock = threading.Lock()
        eos = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        self.eos = eos

    def _body(self, ids: list[int], temperature: float, seed: int, n: int) -> dict:
        body = {"model": self.model, "max_tokens": self.cfg.max_new_tokens, "temperature": float(temperature), "n": n,
                "prompt": ids if self.server.prompt == "tokens" else self.tok.decode(ids, skip_special_tokens=False)}
        if temperature > 0:
            body |= {"top_p": self.cfg.top_p, "seed": int(seed) % (1 << 62)}
        if self.server.kind == "vllm":
            body |= {"return_token_ids": True, "skip_special_tokens": True}
        if self.server.kind == "transformers" and temperature > 0:  # it samples only when told so
            body["generation_config"] = json.dumps({"do_sample": True})
        return body

    def _text(self, choice: dict) -> str:
        """A choice's text, decoded from its token ids where the server returns them (byte-level tokenizers: the
        server's text may hold back an incomplete UTF-8 sequence)."""
        ids = choice.get("token_ids")
        if ids is None:
            return choice.get("text") or ""
        cut = next((i for i, t in enumerate(ids) if t in self.eos), len(ids))
        return self.tok.decode(ids[:cut], skip_special_tokens=True)

    def complete(self, conversation: list[dict], temperature: float = 0.0, seed: int = 0, n: int = 1) -> str | list[str]:
        """The next assistant turn of one conversation (``n`` > 1: a list of ``n`` samples from one request;
        ``transformers serve`` ignores ``n``, so there each sample is a request of its own, seeds ``seed + j``)."""
        ids = self.prompter.encode(conversation)
        if n > 1 and self.server.kind == "transformers":
            return [self.complete(conversation, temperature, seed + j) for j in range(n)]
        answer = self.replicas.post("/v1/completions", self._body(ids, temperature, seed, n))
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise IprkitError(f"the LLM server answered /v1/completions without choices: {str(answer)[:300]}; "
                              "is it an OpenAI-compatible completions server (server.kind)?")
        texts = [self._text(c) for c in sorted(answer["choices"], key=lambda c: c.get("index", 0))]
        new = (answer.get("usage") or {}).get("completion_tokens") or 0
        with self._lock:
            self.stats["calls"] += 1
            self.stats["sequences"] += n
            self.stats["prompt_tokens"] += len(ids)
            self.stats["new_tokens"] += new
        return texts[0] if n == 1 else texts

    def generate(self, conversations: list[list[dict]], temperature: float = 0.0, seed: int | list[int] = 0,
                 keys: list | None = None) -> list[str]:
        """One turn per conversation, ``concurrency`` requests in flight (``keys``: unused; the server's prefix
        cache does that job)."""
        seeds = row_seeds(seed, len(conversations))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(conversations)))) as ex:
            return list(ex.map(lambda a: self.complete(a[0], temperature, a[1]), zip(conversations, seeds)))

    def close(self) -> None:
        if self.owned is not None:
            self.owned.stop()
            self.owned = None


def server_backend(model_dir: str | Path, cfg: GenerationSettings, server: ServerSettings, threads: int = 1,
                   log_dir: Path | None = None) -> OpenAIBackend:
    """A server backend for the model folder of a stage: the servers at ``server.urls``, or one launched on it."""
    from iprkit.models import adapter_base, load_tokenizer

    model_dir = Path(model_dir)
    tok = load_tokenizer(model_dir)
    folder = adapter_base(model_dir) or model_dir  # an adapter's window is its base's
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    window = int(config.get("max_position_embeddings") or 2048)
    owned = None
    if server.launch:
        from iprkit.serving import LaunchedServer

        owned = LaunchedServer(server.kind, model_dir, python=server.python, extra_args=server.extra_args,
                               startup_s=server.startup_s, threads=threads, log_dir=log_dir).start()
        urls, model = [owned.url], owned.model_name
    else:
        urls = list(server.urls)
        model = served_model(Replicas(urls), model_dir)
    try:
        return OpenAIBackend(tok, cfg, server, urls, model, window, owned)
    except BaseException:
        if owned is not None:
            owned.stop()
        raise
