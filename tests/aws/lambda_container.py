"""One Lambda "container": a process that imports one function's handler and runs invocations.

    python -m tests.aws.lambda_container functions.enqueue.handler <function-name> <timeout-s>

The environment is the function's own (from the synthesized template, references replaced by
local endpoints), so module globals, the cached settings and the App with its one DB connection
live per function, as in a warm Lambda container. Invocations arrive as JSON lines on stdin; each
answer is one JSON line on the original stdout, {"result": ...} or {"error": {"type", "message"}}
(what Lambda reports as a function error). Everything the function prints -- Powertools' JSON
logs and EMF metrics -- goes to stderr, the container's log.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any


def main() -> None:
    module, function_name, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's prints (logs, metrics) go to the log, not into the answers
    sys.stdout = os.fdopen(1, "w", buffering=1)

    from local.lambda_shim import LocalContext

    handler = importlib.import_module(module).handler
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        event = json.loads(line)
        context = LocalContext(function_name=function_name, timeout_s=timeout_s)
        answer: dict[str, Any]
        try:
            answer = {"result": handler(event, context)}
        except Exception as exc:  # reported like Lambda's Unhandled function error
            traceback.print_exc()
            answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        answers.write(json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
