// The shopper's progress page: follows one payment job by polling GET /v1/payments/{job_id},
// waiting poll_after_ms between polls as the API advises, until the job is paid or failed.
"use strict";

(() => {
  const TOKEN_KEY = "pq.shopper-token";
  const REASONS = {
    insufficient_balance:
      "Your wallet balance is lower than the order total. Nothing was charged; add money to your wallet and try again.",
    out_of_stock:
      "An item in your order sold out before we could reserve it. Nothing was charged.",
    order_not_payable:
      "This order was already paid or cancelled, so nothing was charged this time.",
    invalid_order:
      "Something in this order does not add up, so we could not take the payment. Nothing was charged; please contact support.",
  };
  const FALLBACK_REASON = "We could not complete the payment. Nothing was charged; please try again.";
  const HEADLINES = {
    queued: "Waiting in line",
    processing: "Processing your payment",
    succeeded: "Paid",
    failed: "Payment failed",
  };

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat();
  let token = PQ.takeToken(TOKEN_KEY, ["job", "order", "api"]);
  let jobId = PQ.fragment.get("job") || "";
  const orderId = PQ.fragment.get("order") || "";
  let firstPosition = 0;
  let lastStatus = "";
  let lastAnnouncedAt = 0;
  let retryMs = 1000;

  function announce(text) {
    $("announce").textContent = text;
    lastAnnouncedAt = Date.now();
  }

  function problem(text) {
    $("problem").textContent = text;
    $("problem").hidden = !text;
  }

  function waitText(seconds) {
    if (seconds < 1) return "less than a second";
    if (seconds < 60) return "about " + Math.round(seconds) + (Math.round(seconds) === 1 ? " second" : " seconds");
    const minutes = Math.round(seconds / 60);
    return "about " + minutes + (minutes === 1 ? " minute" : " minutes");
  }

  function render(job) {
    const status = job.status;
    $("tracker").hidden = false;
    $("order-line").hidden = false;
    $("order-id").textContent = "#" + job.order_id;
    $("state").textContent = HEADLINES[status] || status;
    $("state").dataset.status = status;
    const bar = $("bar");
    const facts = $("queue-facts");
    if (status === "queued" || status === "processing") {
      const position = job.position || 1;
      firstPosition = Math.max(firstPosition, position);
      // How far along the line this job has moved since the page first saw it.
      const moved = firstPosition > 1 ? (firstPosition - position) / firstPosition : 0;
      bar.value = status === "processing" ? 90 : Math.round(5 + 80 * moved);
      facts.hidden = false;
      $("position").textContent = number.format(position);
      $("eta").textContent = waitText(job.eta_seconds || 0);
      $("detail").textContent =
        status === "processing" ? "The payment provider is confirming your payment." : "Please keep this page open.";
      const line = "You are number " + number.format(position) + " in line, " + waitText(job.eta_seconds || 0) + " to go.";
      // Say the place in line when the state changes, then at most every 15 seconds.
      if (status !== lastStatus) announce(HEADLINES[status] + ". " + line);
      else if (Date.now() - lastAnnouncedAt > 15000) announce(line);
    } else {
      bar.value = 100;
      facts.hidden = true;
      if (status === "succeeded") {
        $("detail").textContent =
          "Order #" + job.order_id + " is paid. Payment reference: " + job.payment_id + ".";
      } else {
        $("detail").textContent = REASONS[job.reason] || FALLBACK_REASON;
        $("detail").dataset.reason = job.reason || "";
      }
      if (status !== lastStatus) announce(HEADLINES[status] + ". " + $("detail").textContent);
    }
    lastStatus = status;
  }

  async function poll() {
    let answer;
    try {
      answer = await PQ.call("GET", "/v1/payments/" + encodeURIComponent(jobId), token);
    } catch (_) {
      $("connection").textContent = "Connection lost; trying again…";
      retryMs = Math.min(retryMs * 2, 10000);
      setTimeout(poll, retryMs);
      return;
    }
    $("connection").textContent = "";
    if (answer.status === 200) {
      retryMs = 1000;
      render(answer.body);
      if (answer.body.status === "queued" || answer.body.status === "processing") {
        setTimeout(poll, answer.body.poll_after_ms || 1000);
      }
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      problem("Your sign-in has expired. Sign in again to see this payment.");
      return;
    }
    if (answer.status === 404) {
      problem("We can't find this payment. Check the link you followed.");
      return;
    }
    // Throttled or a fault on our side: back off, the job goes on without us.
    $("connection").textContent = "The payment service is busy; checking again shortly…";
    retryMs = Math.min(retryMs * 2, 10000);
    setTimeout(poll, retryMs);
  }

  function follow(id) {
    jobId = id;
    PQ.setFragment({ job: id });
    $("pay-form").hidden = true;
    $("tracker").hidden = false;
    poll();
  }

  async function pay(event) {
    event.preventDefault();
    const button = $("pay-button");
    button.disabled = true;
    problem("");
    // One key per order in this tab: a retried click replays the same job instead of a second one.
    const keyName = "pq.key." + orderId;
    const key = sessionStorage.getItem(keyName) || PQ.newKey("progress-page-" + orderId);
    sessionStorage.setItem(keyName, key);
    let answer;
    try {
      answer = await PQ.call("POST", "/v1/payments", token, {
        body: { order_id: Number(orderId), method: "wallet" },
        headers: { "Idempotency-Key": key },
      });
    } catch (_) {
      button.disabled = false;
      problem("We could not reach the payment service. Check your connection and try again.");
      return;
    }
    const error = answer.body && answer.body.error;
    if (answer.status === 202 || answer.status === 200) {
      follow(answer.body.job_id);
    } else if (error && error.code === "payment_in_progress" && error.details && error.details.job_id) {
      follow(error.details.job_id);
    } else if (error && error.code === "order_not_payable") {
      problem("This order is already " + ((error.details && error.details.order_status) || "closed") + ".");
    } else if (answer.status === 401) {
      problem("Your sign-in has expired. Sign in again to pay.");
    } else {
      button.disabled = false;
      problem((error && error.message) || "The payment could not be started. Please try again.");
    }
  }

  function start() {
    if (jobId) {
      follow(jobId);
    } else if (orderId) {
      $("pay-order").textContent = "#" + orderId;
      $("pay-form").hidden = false;
      $("pay-form").addEventListener("submit", pay);
    } else {
      problem("No payment to show. Open this page from your shop's link.");
    }
  }

  if (token) {
    start();
  } else {
    const form = $("token-form");
    if (jobId) $("job-input").value = jobId;
    PQ.showTokenForm(
      form,
      (value) => {
        token = value;
        jobId = form.querySelector("input[name=job]").value.trim() || jobId;
        problem("");
        start();
      },
      TOKEN_KEY,
    );
  }
})();
