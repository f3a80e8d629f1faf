// The part both stand-in scripts share (the simulator serves it ahead of each): the gateway's own
// checkout page in an iframe over the shop's page, and the messages that page posts back. The real
// scripts work the same way: Razorpay's checkout.js and Cashfree's "_modal" target open the gateway's
// page in a frame, so the shop's page never sees card or UPI details.
const SIM_ORIGIN = new URL(document.currentScript.src).origin;

function openSimCheckout(gateway, params, onMessage) {
  const overlay = document.createElement("div");
  overlay.dataset.pqGatewaySim = gateway;
  // Styles through the CSSOM: a shop page's CSP that forbids inline style attributes still allows it.
  Object.assign(overlay.style, {
    position: "fixed", inset: "0", zIndex: "2147483647", background: "rgba(0, 0, 0, 0.55)",
    display: "flex", alignItems: "center", justifyContent: "center",
  });
  const frame = document.createElement("iframe");
  const url = new URL("/_sim/checkout.html", SIM_ORIGIN);
  url.search = new URLSearchParams({ gateway, parent: location.origin, ...params }).toString();
  frame.src = url.href;
  frame.title = (gateway === "razorpay" ? "Razorpay" : "Cashfree") + " checkout (local simulator)";
  Object.assign(frame.style, {
    width: "min(26rem, 94vw)", height: "min(32rem, 92vh)", border: "0", borderRadius: "0.75rem",
    background: "#ffffff",
  });
  overlay.appendChild(frame);
  document.body.appendChild(overlay);
  const before = document.activeElement;

  function close() {
    window.removeEventListener("message", listen);
    overlay.remove();
    if (before && typeof before.focus === "function") before.focus();
  }

  // Only the simulator's own frame speaks for the gateway.
  function listen(event) {
    if (event.origin !== SIM_ORIGIN || event.source !== frame.contentWindow) return;
    const data = event.data || {};
    if (data.source !== "pq-gateway-sim" || data.gateway !== gateway) return;
    onMessage(data, close);
  }

  window.addEventListener("message", listen);
  frame.addEventListener("load", () => frame.focus());
  return close;
}
