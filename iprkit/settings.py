"""Every setting of the kit, in one place: dataclasses with a docstring under each field.

The stage modules (``sft``, ``mc``, ``pairs``, ``train``, ``backends``, ``loop``) read these;
this module imports nothing heavy, so the command line can parse, check and explain any
config without loading torch. ``iprkit <command> --help`` prints the field docs
(:func:`iprkit.config.help_text`).

One name per kind of thing: ``*Settings`` (``*Config`` is what TRL and transformers call
their own classes, which the trainers build from these). One home per setting: the run's
seeds and CPU threads live in :class:`RunSettings` (standalone commands take them as flags),
never inside a stage's settings.
"""

from dataclasses import dataclass, field, replace

from iprkit.errors import IprkitError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")
"""transformers' learning-rate schedulers (``lr_scheduler``)."""


def require(ok: bool, field_path: str, value, allowed: str) -> None:
    """Refuse a setting, naming the field, its value and what is allowed (checked when settings are made, so a
    bad run fails before any work)."""
    if not ok:
        raise IprkitError(f"{field_path}={value!r}: {allowed}.")


def _whole(obj, section: str, minimum: int, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        require(isinstance(v, int) and v >= minimum, f"{section}{n}", v, f"must be a whole number >= {minimum}")


def _fraction(obj, section: str, *names: str, top: float = 1.0) -> None:
    for n in names:
        v = getattr(obj, n)
        require(0.0 <= v < top if top == 1.0 else 0.0 <= v <= top, f"{section}{n}", v,
                f"must be in [0, {top}{')' if top == 1.0 else ']'}")


def _positive(obj, section: str, *names: str) -> None:
    for n in names:
        require(getattr(obj, n) > 0, f"{section}{n}", getattr(obj, n), "must be > 0")


# -- the model -------------------------------------------------------------------------


@dataclass
class ModelSettings:
    """Which model the agent is, and how it is loaded."""

    name_or_path: str = "tiny"
    """A preset built from scratch (``tiny`` ~2M parameters, ``small`` ~20M), a local HF model folder, or a hub id."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16 (use float32 on CPU)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights; the base stays frozen."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules that get adapters."""

    def __post_init__(self):
        require(self.dtype in ("float32", "bfloat16", "float16"), "model.dtype", self.dtype,
                "choose float32, bfloat16 or float16")
        _whole(self, "model.", 1, "lora_r", "lora_alpha")
        _fraction(self, "model.", "lora_dropout")


@dataclass
class GenerationSettings:
    """How the model writes a turn (the temperature is the stage's: greedy exploration and evaluation,
    ``mc.temperature`` for Monte Carlo rollouts)."""

    max_new_tokens: int = 96
    """Tokens per assistant turn (the paper uses 512 with 7B models)."""
    top_p: float = 1.0
    """Nucleus sampling mass for sampled turns (1 = off)."""
    batch_size: int = 64
    """Most sequences in one generate call (and episodes live at once)."""
    max_context: int | None = None
    """Prompt budget in tokens; None = the model's window minus max_new_tokens."""
    share_prefix: bool = True
    """Prefill identical sampled prompts once and repeat the KV cache (False: encode each copy)."""
    compact: bool = True
    """Drop finished sequences from the decode batch (whenever at most half of it is still writing), so a
    turn's later tokens cost what its few long outputs need, not the whole batch (False: decode all rows to the end)."""
    keep_cache: bool = True
    """Keep each episode's KV cache between its turns and prefill only new tokens (False:
    re-encode the whole history every turn). Memory: one cache per live episode (for a 7B
    model with 8 KV heads, about 0.13 MB per token per episode in bf16)."""

    def __post_init__(self):
        _whole(self, "generation.", 1, "max_new_tokens", "batch_size")
        require(0.0 < self.top_p <= 1.0, "generation.top_p", self.top_p, "must be in (0, 1]")
        require(self.max_context is None or self.max_context >= 16, "generation.max_context", self.max_context,
                "must be None (the model's window) or at least 16 tokens")


SERVER_KINDS = ("openai", "vllm", "transformers")
"""What the server is: ``openai`` (any OpenAI-compatible completions server: SGLang, TGI, llama.cpp; standard
fields only), ``vllm`` (token-id prompts and ``return_token_ids``), ``transformers`` (``transformers serve``: text
prompts; sampling must be asked for with ``generation_config``)."""


@dataclass
class ServerSettings:
    """Rollouts from OpenAI-compatible LLM servers instead of the in-process model (``backend=server``). The kit
    applies the chat template itself and sends the prompt as text or token ids, so prompts are the in-process
    backend's byte for byte."""

    backend: str = "hf"
    """``hf``: the kit's own decode loop in this process; ``server``: the servers below."""
    kind: str = "openai"
    """The server: openai (any), vllm, transformers (see ``SERVER_KINDS``)."""
    urls: list[str] = field(default_factory=list)
    """Base URLs of running servers (``http://host:8000``), one per replica; requests are spread across them.
    Empty with ``launch=true``: the kit starts one for each stage."""
    launch: bool = False
    """Start a server of ``kind`` (vllm or transformers) on each stage's model folder (the SFT scorer, the current
    policy) on a free loopback port, and stop it after the stage."""
    python: str = ""
    """The Python interpreter that runs a launched server (vLLM's own venv: its CPU build pins an older
    transformers); empty: this one."""
    extra_args: list[str] = field(default_factory=list)
    """More command-line arguments for a launched server (e.g. ``--gpu-memory-utilization 0.5``)."""
    prompt: str = "tokens"
    """Send prompts as ``tokens`` (ids: exact) or ``text`` (the template's text; the server tokenizes it again).
    ``transformers serve`` takes only text."""
    concurrency: int = 64
    """Requests in flight at once (episodes advancing independently), across all replicas."""
    timeout_s: float = 300.0
    """Seconds a request may take before it counts as failed."""
    retries: int = 3
    """Failed tries in a row after which a replica is dropped (each retry waits ``backoff_s`` x 2^try)."""
    backoff_s: float = 0.5
    """First wait before a retry, in seconds (doubling)."""
    startup_s: float = 300.0
    """Seconds a launched server may take to answer ``/health``."""

    def __post_init__(self):
        require(self.backend in ("hf", "server"), "server.backend", self.backend, "choose hf or server")
        require(self.kind in SERVER_KINDS, "server.kind", self.kind, f"choose from {list(SERVER_KINDS)}")
        require(self.prompt in ("tokens", "text"), "server.prompt", self.prompt, "choose tokens or text")
        require(not (self.kind == "transformers" and self.prompt == "tokens"), "server.prompt", self.prompt,
                "transformers serve takes text prompts only: set server.prompt=text")
        require(not self.launch or self.kind in ("vllm", "transformers"), "server.launch", self.launch,
                "the kit launches server.kind=vllm or transformers; for another server, start it and give server.urls")
        require(self.backend == "hf" or self.launch or bool(self.urls), "server.urls", self.urls,
                "give one or more base URLs (http://host:port) or set server.launch=true")
        bad = [u for u in self.urls if not str(u).startswith(("http://", "https://"))]
        require(not bad, "server.urls", bad, "each must start with http:// or https://")
        _whole(self, "server.", 1, "concurrency")
        _whole(self, "server.", 0, "retries")
        _positive(self, "server.", "timeout_s", "startup_s")
        require(self.backoff_s >= 0, "server.backoff_s", self.backoff_s, "must be >= 0")


@dataclass
class TrainSettings:
    """How the SFT and DPO stages spread over processes (the global batch stays ``batch_size`` x ``grad_accum``:
    each of N processes takes ``batch_size / N`` examples per step)."""

    num_processes: int = 1
    """Train with this many processes (DDP; launched with torchrun: GPUs, or CPU processes over gloo)."""
    accelerate_config: str | None = None
    """An ``accelerate`` config file (multi-GPU DDP, FSDP, DeepSpeed ZeRO-3; see ``configs/accelerate/``): training
    is launched with ``accelerate launch --config_file`` and the process count comes from the file. A copy is kept
    in the run directory."""

    def __post_init__(self):
        _whole(self, "train.", 1, "num_processes")


# -- the stages ------------------------------------------------------------------------


@dataclass
class SFTSettings:
    """Supervised fine-tuning (defaults: the paper's, except where CPU needs otherwise)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    """The model to train (a tiny preset is built from scratch on the trajectories' text)."""
    epochs: float = 3.0
    """Passes over the expert trajectories (the paper: 3)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run all epochs)."""
    learning_rate: float = 2e-5
    """Peak learning rate (the paper: 2e-5 for Llama-2-7B; the tiny preset uses 3e-3)."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (the paper: cosine)."""
    warmup_ratio: float = 0.03
    """Fraction of steps for linear warm-up (the paper: 0.03)."""
    batch_size: int = 8
    """Sequences per optimizer step on one device."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    max_length: int = 2048
    """Longest training sequence in tokens (longer ones are truncated)."""
    assistant_only_loss: bool = True
    """Loss on assistant turns only (the paper); False trains on all tokens."""
    bf16: bool = False
    """bfloat16 mixed precision (GPU only; keep False on CPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for 7B models on GPU, but each step is slower.
    TRL's default is True, which made the tiny model's steps 1.5x slower; passed explicitly (as transformers 5's
    ``activation_checkpointing``)."""
    logging_steps: int = 25
    """Log the loss every N steps (to the run's trainer_state.json)."""
    group_by_length: bool = True
    """Batch trajectories of similar length together (less padding, faster on CPU)."""
    copy_warmup_steps: int = 0
    """Before SFT, train this many steps on synthetic copy sequences (random words of the trajectories,
    then the same words again), so a model trained from scratch learns to copy from its context. 0 = off."""
    augment_copies: int = 0
    """Add this many copies of every trajectory with its entities renamed (``iprkit.augment``;
    needs envs that list entities, e.g. TextWorld). 0 = off (the paper)."""

    def __post_init__(self):
        _positive(self, "sft.", "epochs", "learning_rate")
        require(self.max_steps == -1 or (isinstance(self.max_steps, int) and self.max_steps >= 1), "sft.max_steps",
                self.max_steps, "must be -1 (run all epochs) or a whole number >= 1")
        require(self.lr_scheduler in SCHEDULERS, "sft.lr_scheduler", self.lr_scheduler, f"choose one of {SCHEDULERS}")
        _fraction(self, "sft.", "warmup_ratio")
        _whole(self, "sft.", 1, "batch_size", "grad_accum", "logging_steps")
        _whole(self, "sft.", 16, "max_length")
        _whole(self, "sft.", 0, "copy_warmup_steps", "augment_copies")


ESTIMATORS = ("mc", "prm", "hybrid")


@dataclass
class MCSettings:
    """Monte Carlo step-reward estimation."""

    n: int = 5
    """Rollouts per scored action (the paper: 5)."""
    temperature: float = 1.0
    """Sampling temperature of the scorer's rollouts (the paper: 1.0; the tiny preset 0.7)."""
    scorer: str = "sft"
    """Which model scores: ``sft`` (the fixed SFT agent, the paper), ``current`` (this iteration's policy) or a model path."""
    score_expert: bool = True
    """Also score the expert's actions with the same estimator."""
    score_same_action: bool = True
    """Also score steps where the agent took the expert's very action (one estimate serves both sides, and no step
    pair can come from such a step). False skips them: the heatmap is blank there and Monte Carlo costs drop by the
    share of matching steps (most steps, for an agent that is good on the explored tasks)."""
    reuse: bool = False
    """Rollout reuse: a rollout that passes through another scored state (same task, same action prefix) is also
    one of that state's N samples, so states are scored shortest prefix first and each runs only what is
    missing (``iprkit.mc`` says which samples count and the small bias it takes). False: the paper's estimator."""
    env_snapshots: bool = False
    """Start each rollout from a copy of the env's state after the prefix (envs with ``can_snapshot``) instead of
    replaying the prefix. Off by default: TextWorld's copy takes 50-300 ms against 4 ms per replayed step; it took
    73 of 166 s of the demo's Monte Carlo stage, which runs in 88 s without it (``benchmarks/mc_stage.py``)."""

    estimator: str = "mc"
    """Step rewards from ``mc`` (Monte Carlo rollouts, the paper), ``prm`` (a learned step reward model trained on
    earlier iterations' Monte Carlo labels; no rollouts) or ``hybrid`` (the model scores every step, Monte Carlo
    where the expert's and agent's scores are within ``pairs.step_margin + prm_band``). Iteration 1 is always
    Monte Carlo (the labels' warm-up); :mod:`iprkit.prm` says more."""
    prm_band: float = 0.2
    """``hybrid``: how far beyond the pair margin the model's expert-agent difference must lie for its scores to
    stand without Monte Carlo (0: Monte Carlo only where the model sees no winner)."""

    def __post_init__(self):
        _whole(self, "mc.", 1, "n")
        require(self.estimator in ESTIMATORS, "mc.estimator", self.estimator, f"choose one of {ESTIMATORS}")
        require(self.prm_band >= 0, "mc.prm_band", self.prm_band, "must be >= 0")
        require(self.temperature >= 0, "mc.temperature", self.temperature, "must be >= 0 (0: greedy rollouts)")
        require(bool(self.scorer), "mc.scorer", self.scorer, "choose sft, current or a model folder")


@dataclass
class PRMSettings:
    """The learned step reward model (``mc.estimator``: prm or hybrid): a value head on the SFT model."""

    epochs: float = 3.0
    """Passes over the Monte Carlo labels of earlier iterations."""
    learning_rate: float = 3e-4
    """Peak learning rate (cosine schedule), for the backbone and the head."""
    batch_size: int = 16
    """Labels per optimizer step."""
    max_length: int = 512
    """Tokens of a state the model reads (cut from the left: the scored action and its result stay)."""
    holdout: float = 0.1
    """Share of the labels held out to measure the model (``prm_metrics.json``: error, correlation)."""

    def __post_init__(self):
        _positive(self, "prm.", "epochs", "learning_rate")
        _whole(self, "prm.", 1, "batch_size")
        _whole(self, "prm.", 16, "max_length")
        require(0 <= self.holdout < 1, "prm.holdout", self.holdout, "must be in [0, 1)")


PAIR_MODES = ("entire", "single-step")


@dataclass
class PairSettings:
    """Which pairs to build and how."""

    step_pairs: bool = True
    """Build IPR's step-level pairs."""
    outcome_pairs: bool = True
    """Build ETO's outcome-level pairs (t = 0 rollout against the expert)."""
    final_margin: float = 0.01
    """The winner's final reward must exceed the loser's by more than this (the paper: 0.01)."""
    step_margin: float = 0.01
    """The winner's MC step reward must exceed the loser's by more than this (the paper: 0.01)."""
    mode: str = "entire"
    """``entire``: the step plus its continuation (the paper); ``single-step``: the one action."""

    def __post_init__(self):
        if self.mode not in PAIR_MODES:
            raise IprkitError(f"pairs.mode={self.mode!r}: choose one of {PAIR_MODES} (e.g. pairs.mode=single-step).")
        for n in ("final_margin", "step_margin"):
            require(getattr(self, n) >= 0, f"pairs.{n}", getattr(self, n), "must be >= 0 (the paper: 0.01)")


@dataclass
class DPOSettings:
    """Preference training (defaults: the paper's)."""

    beta: float = 0.1
    """DPO temperature (the paper: 0.1)."""
    nll_weight: float = 1.0
    """Weight of the NLL term on chosen sequences (0 = plain DPO, as ETO)."""
    nll: str = "sum"
    """``sum``: summed over each chosen sequence (the paper); ``mean``: token mean (TRL's ``sft`` loss)."""
    mask_observations: bool = True
    """Mask observation (user) turns inside multi-turn chosen/rejected out of the log-probs."""
    learning_rate: float = 3e-6
    """Peak learning rate (the paper: 3e-6, constant with warm-up)."""
    lr_scheduler: str = "constant_with_warmup"
    """transformers scheduler name."""
    warmup_ratio: float = 0.1
    """Fraction of steps for warm-up (the paper: 0.1)."""
    epochs: float = 3.0
    """Passes over the pairs (the paper: 3)."""
    batch_size: int = 8
    """Pairs per optimizer step on one device (the paper: 48 global)."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    max_length: int = 2048
    """Longest prompt+completion in tokens."""
    reference: str = "sft"
    """Reference model: ``sft`` (the paper) or ``previous`` (the policy this iteration starts from; ETO)."""
    bf16: bool = False
    """bfloat16 mixed precision (GPU only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third slower (TRL's default is True;
    on for the paper preset's 7B model, off for small models)."""

    def __post_init__(self):
        _positive(self, "dpo.", "beta", "learning_rate", "epochs")
        require(self.nll_weight >= 0, "dpo.nll_weight", self.nll_weight, "must be >= 0 (0: plain DPO)")
        require(self.nll in ("sum", "mean"), "dpo.nll", self.nll, "choose sum (the paper) or mean")
        require(self.reference in ("sft", "previous"), "dpo.reference", self.reference, "choose sft or previous")
        require(self.lr_scheduler in SCHEDULERS, "dpo.lr_scheduler", self.lr_scheduler, f"choose one of {SCHEDULERS}")
        _fraction(self, "dpo.", "warmup_ratio")
        _whole(self, "dpo.", 1, "batch_size", "grad_accum")
        _whole(self, "dpo.", 16, "max_length")


# -- the methods -----------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One method of the results table: how it differs from IPR (None = as the run's settings say)."""

    name: str
    """The name used in ``methods=[...]`` and in the run directory."""
    doc: str
    """One line for tables and ``--help``."""
    iterations: str | None = "iterations"
    """The RunSettings field that counts its iterations (None: no iterations; the SFT agent alone)."""
    step_pairs: bool | None = None
    """Force IPR's step pairs on or off (off also means exploring from t = 0 only, and no Monte Carlo)."""
    outcome_pairs: bool | None = None
    """Force ETO's outcome pairs on or off."""
    nll_weight: float | None = None
    """Force the weight of the NLL term on chosen sequences."""
    reference: str | None = None
    """Force the DPO reference: ``sft`` or ``previous``."""

    def pair_settings(self, base: PairSettings) -> PairSettings:
        """The run's pair settings with this method's changes."""
        return replace(base, **{k: getattr(self, k) for k in ("step_pairs", "outcome_pairs")
                                if getattr(self, k) is not None})

    def dpo_settings(self, base: DPOSettings) -> DPOSettings:
        """The run's DPO settings with this method's changes."""
        return replace(base, **{k: getattr(self, k) for k in ("nll_weight", "reference") if getattr(self, k) is not None})


METHODS = {m.name: m for m in [
    Method("sft", "the SFT agent alone (iteration 0 of every method)", iterations=None),
    Method("eto", "ETO: outcome pairs only, plain DPO (no NLL), reference = the policy it starts from",
           iterations="eto_iterations", step_pairs=False, outcome_pairs=True, nll_weight=0.0, reference="previous"),
    Method("ipr", "IPR: step pairs from Monte Carlo step rewards + outcome pairs, DPO + NLL, reference = SFT"),
    Method("ipr-no-step", "IPR without step pairs (outcome pairs, DPO + NLL, reference = SFT)", step_pairs=False),
    Method("ipr-no-outcome", "IPR without outcome pairs", outcome_pairs=False),
    Method("ipr-no-nll", "IPR without the NLL term", nll_weight=0.0),
]}
"""The methods a run can compare, by name."""


# -- the run ---------------------------------------------------------------------------


@dataclass
class RunSettings:
    """The main job: environments, data sizes, methods, seeds and every stage's settings."""

    env: str = "textworld"
    """Environment name: any installed env (``iprkit envs`` lists them; built in: textworld, alfworld, sql)."""
    env_kwargs: dict = field(default_factory=dict)
    """Settings passed to the env adapter (e.g. preset, n_train, data_dir, url; ``iprkit envs`` lists each env's)."""
    train_split: str = "train"
    """Split the expert trajectories come from."""
    n_experts: int | None = None
    """Use the first N tasks of the train split for SFT (None: all)."""
    n_explore: int | None = None
    """Explore along N expert trajectories each iteration (None: all); which N, ``explore_sample`` says."""
    explore_sample: str = "fixed"
    """Which tasks each iteration explores: ``fixed``, the first ``n_explore`` of the pool every iteration; ``fresh``,
    a new draw of ``n_explore`` from the pool each iteration (seeded by seed and iteration, the same for every method;
    without repeats while the pool lasts). The pool: the SFT tasks (the paper explores its whole train split), or with
    ``explore_held_out`` the train tasks after them (the experts stage then replays ``n_explore`` x iterations)."""
    explore_held_out: bool = False
    """Explore along the ``n_explore`` train tasks after the first ``n_experts`` (expert trajectories SFT never saw)
    instead of the first ``n_explore`` SFT tasks (the paper). For a small model that memorises its SFT tasks: there it
    already takes the expert's every action, so exploring them finds nothing to contrast."""
    eval_splits: list[str] | None = None
    """Splits to evaluate on (None: the env's test splits, each reported apart)."""
    n_eval: int | None = None
    """Evaluate on the first N tasks of each eval split (None: all)."""
    eval_explored: bool = True
    """Also evaluate every model (greedy, as the eval splits) on the tasks the run's iterations explore, reported apart
    (split ``explored``, never averaged into ``success``): "learns what it explores" next to "generalises"."""
    methods: list[str] = field(default_factory=lambda: ["sft", "eto", "ipr"])
    """Methods to run: sft, eto, ipr, ipr-no-step, ipr-no-outcome, ipr-no-nll (``iprkit.settings.METHODS``)."""
    iterations: int = 3
    """IPR iterations (the paper's pipeline: up to 6)."""
    eto_iterations: int = 3
    """ETO iterations (ETO: 3)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds; each runs SFT and every method from scratch (model initialisation, data order, sampling)."""
    explore_temperature: float = 0.0
    """Temperature of the current agent's exploration (the paper: greedy)."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """Supervised fine-tuning of the base agent."""
    mc: MCSettings = field(default_factory=MCSettings)
    """Monte Carlo step rewards (and which estimator makes them)."""
    prm: PRMSettings = field(default_factory=PRMSettings)
    """The learned step reward model (``mc.estimator``: prm or hybrid)."""
    pairs: PairSettings = field(default_factory=PairSettings)
    """Pair construction."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """Preference training."""
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    """How models write turns in every rollout."""
    server: ServerSettings = field(default_factory=ServerSettings)
    """Where rollouts run: in this process (default) or on OpenAI-compatible LLM servers."""
    train: TrainSettings = field(default_factory=TrainSettings)
    """How many processes train (SFT and DPO)."""
    threads: int = 2
    """torch CPU threads, for every stage of the run."""
    sft_model: str | None = None
    """Start every method from this SFT model folder instead of training one (``{seed}`` in the path becomes the
    seed), e.g. a model from ``iprkit sft`` or an earlier run's ``seed0/sft/model``: tune IPR without redoing SFT.
    It is copied into the run directory, with its origin in ``sft/source.json``."""
    experts_file: str | None = None
    """Bring your own expert trajectories instead of the env's gold paths: the kit's JSONL, or the paper's release file
    itself (IPR/ETO SFT format; ``iprkit import`` describes the mapping). Each is replayed in the env first; those that
    do not reproduce are reported per item and skipped."""
    release_instruction: bool = True
    """With a release file as ``experts_file``: keep its instruction (turn 0, the paper's prompt) verbatim as the
    env's instruction preamble, for the SFT data and every rollout alike (False: the env's own instruction)."""

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise IprkitError(f"methods: unknown method(s) {unknown}; choose from {list(METHODS)}.")
        require(bool(self.methods), "methods", self.methods, f"name at least one of {list(METHODS)}")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
                "give one or more distinct seeds, e.g. seeds=[0,1,2]")
        _whole(self, "", 0, "iterations", "eto_iterations")
        _whole(self, "", 1, "threads")
        for n in ("n_experts", "n_explore", "n_eval"):
            v = getattr(self, n)
            require(v is None or (isinstance(v, int) and v >= 1), n, v, "must be None (all) or a whole number >= 1")
        require(self.explore_temperature >= 0, "explore_temperature", self.explore_temperature, "must be >= 0")
        for section in ("sft", "dpo"):
            b = getattr(self, section).batch_size
            require(b % self.train.num_processes == 0, f"{section}.batch_size", b,
                    f"must divide among train.num_processes={self.train.num_processes} processes (the global batch is kept)")
        require(self.explore_sample in ("fixed", "fresh"), "explore_sample", self.explore_sample, "choose fixed or fresh")
        require(self.explore_sample == "fixed" or self.n_explore is not None, "explore_sample", self.explore_sample,
                "fresh draws n_explore tasks per iteration: set n_explore too")
        if self.explore_held_out and (self.n_experts is None or self.n_explore is None):
            raise IprkitError("explore_held_out=true needs n_experts (the SFT tasks) and n_explore (the held-out tasks "
                              "after them); set both, and give the train split n_experts + n_explore tasks.")

    def max_iterations(self) -> int:
        """The most iterations any of the run's methods runs."""
        return max(self.method_iterations(m) for m in self.methods)

    def method_iterations(self, method: str) -> int:
        """How many iterations ``method`` runs under these settings."""
        field_name = METHODS[method].iterations
        return 0 if field_name is None else getattr(self, field_name)
