// The simulator's stand-in for a gateway's hosted checkout page, shown in a frame by the stand-in
// scripts: the person running the demo plays the shopper and chooses how the payment ends. It asks
// the simulator (its own origin) to make the payment, then tells the shop's page through postMessage,
// addressed to the shop page's origin only.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const gateway = params.get("gateway");
  const parentOrigin = params.get("parent") || "";
  const $ = (id) => document.getElementById(id);
  const ref = gateway === "razorpay"
    ? { order_id: params.get("order_id") || "", key: params.get("key") || "" }
    : { payment_session_id: params.get("payment_session_id") || "" };

  function tell(message) {
    if (window.parent !== window && parentOrigin) {
      window.parent.postMessage({ source: "pq-gateway-sim", gateway, ...message }, parentOrigin);
    }
  }

  function say(text, kind) {
    $("status").textContent = text;
    $("status").dataset.kind = kind || "";
  }

  function busy(on) {
    $("succeed").disabled = on;
    $("fail").disabled = on;
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    return { status: response.status, body: await response.json() };
  }

  async function load() {
    $("title").textContent = (gateway === "razorpay" ? "Razorpay" : "Cashfree") + " checkout";
    if (params.get("name")) $("merchant").textContent = params.get("name");
    const answer = await fetch("/_sim/checkout-summary?" + new URLSearchParams({ gateway, ...ref }), { cache: "no-store" });
    const summary = await answer.json();
    if (answer.status !== 200) {
      say(summary.error || "This checkout cannot be paid.", "failed");
      return;
    }
    $("amount").textContent = new Intl.NumberFormat("en-IN", { style: "currency", currency: summary.currency })
      .format(summary.amount_paise / 100);
    $("reference").textContent = "Gateway order " + summary.order_id;
    busy(false);
    $("succeed").focus();
  }

  async function pay(outcome) {
    busy(true);
    say(outcome === "success" ? "Paying…" : "Declining…");
    const path = "/_sim/" + gateway + "/checkout";
    const body = { ...ref, outcome };
    delete body.key;
    let answer;
    try {
      answer = await post(path, body);
    } catch (_) {
      say("The simulator did not answer.", "failed");
      busy(false);
      return;
    }
    if (answer.status !== 200) {
      say((answer.body.error && (answer.body.error.description || answer.body.error.message)) || "Refused.", "failed");
      busy(false);
      return;
    }
    if (outcome === "success") {
      say("Paid.");
      if (gateway === "razorpay") {
        tell({ kind: "success", response: answer.body });
      } else {
        tell({ kind: "success", message: "Payment finished. Check status." });
      }
      return;
    }
    // As at the gateway, a declined attempt leaves the checkout open for another try.
    say("The payment failed. Try again, or close this window.", "failed");
    if (gateway === "razorpay") tell({ kind: "failed", response: { error: answer.body.error } });
    busy(false);
  }

  $("succeed").addEventListener("click", () => pay("success"));
  $("fail").addEventListener("click", () => pay("failed"));
  $("close").addEventListener("click", () => tell({ kind: "dismissed" }));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") tell({ kind: "dismissed" });
  });
  load();
})();
