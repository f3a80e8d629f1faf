"""Drives the official cashfree-pg SDK; runs inside its own virtualenv (see conftest.py), never imported.

cashfree-pg 6.0.1 hard-codes its two hosts in every API method (Configuration(host=...)); the only
change made here is a Configuration that points at the simulator. Everything else is the SDK's own:
request models, headers, and the deserialisation of every answer into its pydantic models.

Protocol: one JSON command per line on stdin, one JSON answer per line on stdout.
  {"op": "call", "method": "PGCreateOrder", "args": {...}}  args by name; "*_request" args are dicts
      -> {"status", "headers", "data"} (data: the answer's model as a dict) or
         {"status", "headers", "error", "error_model", "error_valid"} when the SDK raised ApiException
  {"op": "verify_webhook", "signature", "body", "timestamp"}  -> {"ok", "type"} (PGVerifyWebhookSignature)
  {"op": "validate", "model": "PaymentWebhook", "json": "..."}  -> {"ok", "data" | "error"}
"""

from __future__ import annotations

import json
import sys
from typing import Any

import cashfree_pg.api_client as api_client
import cashfree_pg.models as models
from cashfree_pg.api_client import Cashfree, CFEnvironment
from cashfree_pg.configuration import Configuration
from cashfree_pg.exceptions import ApiException

# Error models by status, as the SDK's _response_types_map names them for these endpoints.
ERROR_MODELS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "ApiError404",
    409: "ApiError409",
    422: "IdempotencyError",
    429: "RateLimitError",
    500: "ApiError",
}
REQUEST_MODELS = {
    "create_order_request": "CreateOrderRequest",
    "order_create_refund_request": "OrderCreateRefundRequest",
}


def _to_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def main() -> None:
    base_url, client_id, client_secret, api_version = sys.argv[1:5]

    class SimulatorConfiguration(Configuration):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = base_url.rstrip("/") + "/pg"
            super().__init__(*args, **kwargs)

    api_client.Configuration = SimulatorConfiguration
    cashfree = Cashfree(XEnvironment=CFEnvironment.SANDBOX, XClientId=client_id, XClientSecret=client_secret)
    cashfree.XApiVersion = api_version
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = handle(cashfree, command)
        except Exception as exc:  # report it to the test rather than dying
            answer = {"exception": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer, default=str) + "\n")
        sys.stdout.flush()


def handle(cashfree: Cashfree, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "verify_webhook":
        try:
            event = cashfree.PGVerifyWebhookSignature(command["signature"], command["body"], command["timestamp"])
        except Exception as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "type": event.type}
    if op == "validate":
        model = getattr(models, command["model"])
        try:
            return {"ok": True, "data": model.from_json(command["json"]).to_dict()}
        except Exception as exc:
            return {"ok": False, "error": str(exc)}
    args = dict(command.get("args", {}))
    for name, model_name in REQUEST_MODELS.items():
        if name in args:
            args[name] = getattr(models, model_name).from_dict(args[name])
    try:
        response = getattr(cashfree, command["method"])(**args)
    except ApiException as exc:
        body = exc.body if isinstance(exc.body, str) else (exc.body or b"").decode()
        error_model_name = ERROR_MODELS.get(int(exc.status or 0))
        valid, error_model = False, None
        if error_model_name:
            try:
                error_model = getattr(models, error_model_name).from_json(body).to_dict()
                valid = True
            except Exception as err:
                error_model = str(err)
        return {
            "status": exc.status,
            "headers": dict(exc.headers or {}),
            "error": json.loads(body) if body else None,
            "error_model": error_model,
            "error_valid": valid,
        }
    return {"status": response.status_code, "headers": dict(response.headers), "data": _to_plain(response.data)}


if __name__ == "__main__":
    main()
