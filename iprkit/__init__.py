"""iprkit: Iterative step-level Process Refinement (IPR) for LLM agents, notebook-first.

Data flows one way: env -> trajectories -> rewards -> pairs -> trainer -> model -> eval.
The core never imports Jupyter; the UI lives in ``iprkit.widgets``.
"""

from iprkit.errors import IprkitError

__version__ = "0.1.0"
__all__ = ["IprkitError", "__version__"]
