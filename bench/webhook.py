"""A webhook receiver on loopback: counts the notifications each system delivers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Receiver:
    event_ids: set[str] = field(default_factory=set)
    job_ids: set[str] = field(default_factory=set)
    deliveries: int = 0
    baseline_orders: set[int] = field(default_factory=set)

    async def ours(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.deliveries += 1
        self.event_ids.add(str(event["id"]))
        self.job_ids.add(str(event["data"]["job_id"]))
        return web.json_response({"ok": True})

    async def baseline(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.deliveries += 1
        self.baseline_orders.add(int(body["order_id"]))
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ours", self.ours)
        app.router.add_post("/baseline", self.baseline)
        return app
