"""`python -m worker.llm`: the embedded default LLM of `make run`, served OpenAI-style by `transformers serve`.

Builds the demo LLMs (worker/ml/demo_llm.py) under BIPLANE_DEMO_MODEL_DIR once, then becomes
`transformers serve` on BIPLANE_HOST:BIPLANE_LLM_PORT, offline (no hub). Requests name a model by its local
directory (BIPLANE_LLM_MODEL; by default the demo LLM that answers JSON). Any other OpenAI-compatible server
can replace it: set BIPLANE_LLM_URL and BIPLANE_LLM_MODEL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common.config import load_or_exit
from worker.ml.demo_llm import ensure_demo_llm


def command(host: str, port: int) -> list[str]:
    """The `transformers serve` command line (the console script of this environment)."""
    return [str(Path(sys.executable).parent / "transformers"), "serve", "--host", host, "--port", str(port)]


def main() -> None:
    settings = load_or_exit()
    for kind in ("json", "plain"):
        ensure_demo_llm(settings.demo_model_dir.resolve(), kind)
    os.environ["HF_HUB_OFFLINE"] = "1"  # local directories only: never a download
    argv = command(settings.host, settings.llm_port)
    os.execv(argv[0], argv)  # the server gets this process's signals (devstack and tests stop it)


if __name__ == "__main__":
    main()
