// The shopper's progress page: shows an order and its amount, pays it from the wallet or through a
// gateway's own checkout (Razorpay Checkout, Cashfree's SDK: POST /v1/checkouts, then the gateway's
// script, then POST /v1/payments), and follows the payment job until it is paid or failed. While it
// waits in line the page reads the shared "now serving" figure (one cached answer for every shopper)
// and asks about its own job, GET /v1/payments/{job_id}, only when its number comes up or every
// JOB_CHECK_MS; otherwise it polls the job, waiting poll_after_ms as the API advises.
"use strict";

(() => {
  const TOKEN_KEY = "pq.shopper-token";
  const REASONS = {
    insufficient_balance:
      "Your wallet balance is lower than the order total. Nothing was charged; add money to your wallet and try again.",
    currency_mismatch:
      "This order is priced in another currency than your wallet holds, so the wallet cannot pay it. Nothing was charged.",
    out_of_stock:
      "An item in your order sold out before we could reserve it. Nothing was charged.",
    order_not_payable:
      "This order was already paid or cancelled, so nothing was charged this time.",
    invalid_order:
      "Something in this order does not add up, so we could not take the payment. Nothing was charged; please contact support.",
    gateway_payment_failed: "The payment provider declined the payment. Nothing was charged.",
    gateway_payment_not_found: "The payment provider has no record of this payment. Nothing was charged.",
    gateway_order_mismatch: "This payment was made for another order, so it could not pay this one.",
    gateway_checkout_expired: "The payment window expired before a payment was made. Nothing was charged.",
    amount_mismatch: "The amount paid did not match the order, so the payment was not used.",
    gateway_payment_refunded: "The payment was refunded at the payment provider, so it could not pay this order.",
    cancelled: "You left the line. Nothing was charged.",
    dropped_by_operator: "We could not process this payment, so our team stopped it. Nothing was charged.",
  };
  const FALLBACK_REASON = "We could not complete the payment. Nothing was charged; please try again.";
  // What the shopper can do next, by reason. retry "wallet" pays the same order from the wallet again;
  // "choose" offers every way to pay it again; false offers nothing.
  const NEXT_STEPS = {
    insufficient_balance: { text: "Add money to your wallet, then try again.", retry: "wallet" },
    currency_mismatch: { text: "Pay this order another way.", retry: "choose" },
    out_of_stock: { text: "Go back to your cart to change the order; this one cannot be paid as it is.", retry: false },
    order_not_payable: { text: "Check the order's status in your account.", retry: false },
    invalid_order: { text: "Contact support with your order number.", retry: false },
    gateway_payment_failed: { text: "You can pay again, the same way or another.", retry: "choose" },
    gateway_payment_not_found: { text: "You can pay again, the same way or another.", retry: "choose" },
    gateway_order_mismatch: { text: "You can pay this order again.", retry: "choose" },
    gateway_checkout_expired: { text: "You can pay again, the same way or another.", retry: "choose" },
    amount_mismatch: { text: "You can pay again; any amount taken was refunded.", retry: "choose" },
    gateway_payment_refunded: { text: "You can pay again, the same way or another.", retry: "choose" },
    cancelled: { text: "You can pay this order again whenever you are ready.", retry: "choose" },
    dropped_by_operator: { text: "You can pay this order again.", retry: "choose" },
  };
  const FALLBACK_NEXT = { text: "You can try the payment again.", retry: "choose" };
  const RETRY_LABELS = { wallet: "Try the payment again", choose: "Pay again" };
  // A failed gateway payment whose money the gateway had taken: where the refund is.
  const REFUND_TEXT = {
    refunding: "We could not complete this order, so the {amount} you paid is on its way back to you.",
    refunded: "We could not complete this order, so the {amount} you paid was refunded.",
    refund_failed: "We could not complete this order, and the refund of the {amount} you paid has not gone " +
      "through yet. Our team has been alerted and will return it; you need do nothing.",
  };
  // Remembered per order in this browser, so the shop's link to an order already paid (or being
  // paid) shows that payment instead of offering to pay again.
  const jobKey = (order) => "pq.job." + order;
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
  let orderId = PQ.fragment.get("order") || "";
  let firstPosition = 0;
  let lastStatus = "";
  let lastAnnouncedAt = 0;
  let retryMs = 1000;
  let order = null; // GET /v1/orders/{id}: the order, its amount and the ways it can be paid
  let orderAsked = false;
  let retryWith = "choose";
  // Waiting in line: the shared figure's serving never goes back, so neither does the place shown (a
  // cache a second older than the last answer must not move the shopper back).
  const JOB_CHECK_MS = 60000;
  let servingSeen = 0;
  let lastPosition = Infinity;
  let jobCheckedAt = 0;
  let lineWaitMs = 1000;  // between two reads of the shared figure (waitInLine)

  function announce(text) {
    $("announce").textContent = text;
    lastAnnouncedAt = Date.now();
  }

  function problem(text) {
    $("problem").textContent = text;
    $("problem").hidden = !text;
  }

  function money(paise, currency) {
    return new Intl.NumberFormat("en-IN", { style: "currency", currency: currency || "INR" }).format(paise / 100);
  }

  // A 401: an expired token, or one that is no sign-in token at all (never "expired" for that).
  function signInProblem(doing) {
    sessionStorage.removeItem(TOKEN_KEY);
    const expired = PQ.tokenExpired(token);
    problem(
      expired
        ? "Your sign-in has expired. Sign in again to " + doing + "."
        : "This sign-in is not valid here. Sign in again to " + doing + ".",
    );
  }

  function showOrderLine(id) {
    $("order-line").hidden = false;
    $("order-id").textContent = "#" + id;
    if (order && String(order.order_id) === String(id)) {
      $("order-amount").textContent = " · " + money(order.total_paise, order.currency);
    }
  }

  // null: the service has no measured rate (just started, or stalled), so no wait is promised.
  function waitText(seconds) {
    if (seconds === null || seconds === undefined) return "not known yet";
    if (seconds < 1) return "less than a second";
    if (seconds < 60) return "about " + Math.round(seconds) + (Math.round(seconds) === 1 ? " second" : " seconds");
    const minutes = Math.round(seconds / 60);
    return "about " + minutes + (minutes === 1 ? " minute" : " minutes");
  }

  function render(job) {
    const status = job.status;
    $("tracker").hidden = false;
    if (!orderId) orderId = String(job.order_id);
    if (!orderAsked) loadOrder(false);
    showOrderLine(job.order_id);
    $("state").textContent = HEADLINES[status] || status;
    $("state").dataset.status = status;
    const bar = $("bar");
    const facts = $("queue-facts");
    $("leave").hidden = status !== "queued" || Boolean(job.cancel_requested);
    if (status === "queued" || status === "processing") {
      const position = Math.min(job.position || 1, lastPosition);
      lastPosition = position;
      firstPosition = Math.max(firstPosition, position);
      // How far along the line this job has moved since the page first saw it.
      const moved = firstPosition > 1 ? (firstPosition - position) / firstPosition : 0;
      bar.value = status === "processing" ? 90 : Math.round(5 + 80 * moved);
      facts.hidden = false;
      $("position").textContent = number.format(position);
      const known = job.eta_seconds !== null && job.eta_seconds !== undefined;
      $("eta").textContent = known ? waitText(job.eta_seconds) : "Not known yet";
      $("detail").textContent =
        job.cancel_requested
          ? "You asked to leave the line. This order will not be paid with the payment you made: it goes back " +
            "to you when your turn comes."
          : status === "processing"
            ? "The payment provider is confirming your payment."
            : known
              ? "Please keep this page open."
              : "The line is not moving right now, so we can't estimate the wait. Your place is kept; please keep this page open.";
      const line = "You are number " + number.format(position) + " in line, " +
        (known ? waitText(job.eta_seconds) + " to go." : "the wait is not known yet.");
      // Say the place in line when the state changes, then at most every 15 seconds.
      if (status !== lastStatus) announce(HEADLINES[status] + ". " + line);
      else if (Date.now() - lastAnnouncedAt > 15000) announce(line);
    } else {
      bar.value = 100;
      facts.hidden = true;
      if (status === "succeeded") {
        $("detail").textContent =
          "Order #" + job.order_id + " is paid. Payment reference: " + job.payment_id + ".";
      } else if (job.refund) {
        // Money the gateway took goes back: say how far it got, never "nothing was charged".
        const amount = money(job.refund.amount_paise, order && order.currency);
        $("detail").textContent = REFUND_TEXT[job.refund.status].replace("{amount}", amount);
        $("detail").dataset.reason = job.reason || "";
        $("detail").dataset.refund = job.refund.status;
        $("next-step").textContent = (NEXT_STEPS[job.reason] || FALLBACK_NEXT).text;
        $("next-step").hidden = false;
        $("retry").hidden = true;
      } else {
        $("detail").textContent = REASONS[job.reason] || FALLBACK_REASON;
        $("detail").dataset.reason = job.reason || "";
        const next = NEXT_STEPS[job.reason] || FALLBACK_NEXT;
        $("next-step").textContent = next.text;
        $("next-step").hidden = false;
        retryWith = next.retry || "choose";
        $("retry").textContent = RETRY_LABELS[retryWith];
        $("retry").hidden = !next.retry;
        $("retry").disabled = false;
      }
      if (status !== lastStatus) {
        const next = status === "failed" ? " " + $("next-step").textContent : "";
        announce(HEADLINES[status] + ". " + $("detail").textContent + next);
      }
    }
    lastStatus = status;
  }

  // An order the service says is not payable any more: what it is, never a Pay button. attempted: the
  // shopper just tried to pay it (so say nothing more was charged).
  function showClosed(orderStatus, attempted = true) {
    $("pay-form").hidden = true;
    $("tracker").hidden = false;
    showOrderLine(orderId);
    $("queue-facts").hidden = true;
    $("bar").value = 100;
    const paid = orderStatus === "paid";
    $("state").textContent = paid ? "Paid" : "Order " + (orderStatus || "closed");
    $("state").dataset.status = paid ? "succeeded" : "failed";
    $("detail").textContent = paid
      ? "Order #" + orderId + (attempted ? " is already paid. Nothing more was charged." : " is paid.")
      : "Order #" + orderId + " is " + (orderStatus || "closed") + ", so it cannot be paid. Nothing was charged.";
    announce($("state").textContent + ". " + $("detail").textContent);
  }

  // The shared figure's URL: the API's own route, or the CDN in front of it (the fragment's "line":
  // the stack's NowServingUrl output).
  function lineUrl(path) {
    try {
      const line = PQ.fragment.get("line");
      if (line) return new URL(path, line).href;
    } catch (_) {
      // fall through: the API's route
    }
    return (PQ.fragment.get("api") ? new URL(path, PQ.fragment.get("api")).href : path);
  }

  // One read of the shared figure: the place in line and the wait from the job's number, no read of
  // the job. Asks about the job itself once it is about due (within a second's worth of the line's
  // rate), every JOB_CHECK_MS anyway, or when the figure cannot be had.
  async function waitInLine(job) {
    let figure = null;
    try {
      const response = await fetch(lineUrl(job.now_serving_url));
      if (response.ok) figure = await response.json();
    } catch (_) {
      figure = null;
    }
    if (lastStatus !== "queued") return;  // left the line meanwhile, or already on its way
    if (!figure) {
      poll();
      return;
    }
    servingSeen = Math.max(servingSeen, figure.serving);
    const position = Math.max(1, job.queue_number - servingSeen);
    render({ ...job, position, eta_seconds: figure.per_s ? position / figure.per_s : null });
    if (position <= Math.max(1, figure.per_s || 0) || Date.now() - jobCheckedAt >= JOB_CHECK_MS) {
      poll();
      return;
    }
    // The next read when about three quarters of the wait have passed (between 0.5 and 10 s); with no
    // measured rate yet, the last wait grown by half: every waiting shopper reading the figure each
    // second would be the whole load while the line has not moved.
    lineWaitMs = figure.per_s
      ? Math.min(10000, Math.max(500, 750 * position / figure.per_s))
      : Math.min(10000, Math.max(500, lineWaitMs * 1.5));
    setTimeout(() => waitInLine(job), lineWaitMs);
  }

  async function poll() {
    jobCheckedAt = Date.now();
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
      show(answer.body);
      return;
    }
    if (answer.status === 401) {
      signInProblem("see this payment");
      return;
    }
    if (answer.status === 404) {
      if (orderId && localStorage.getItem(jobKey(orderId)) === jobId) {
        // A remembered job this token cannot see (another shopper's, or gone): offer the order again.
        localStorage.removeItem(jobKey(orderId));
        jobId = "";
        start();
        return;
      }
      problem("We can't find this payment. Check the link you followed.");
      return;
    }
    // Throttled or a fault on our side: back off, the job goes on without us.
    $("connection").textContent = "The payment service is busy; checking again shortly…";
    retryMs = Math.min(retryMs * 2, 10000);
    setTimeout(poll, retryMs);
  }

  // A view of the job (a read of it, or the payment's 202, which is one too): shown, then the next read
  // after the advised wait -- the job's own when its number is about due (the view's ETA within a second),
  // else the shared figure.
  function show(job) {
    render(job);
    // The counter the view's position was measured against: a figure from the shared cache may be older.
    if (typeof job.serving === "number") servingSeen = Math.max(servingSeen, job.serving);
    if (job.status === "queued" && job.queue_number && job.now_serving_url) {
      lineWaitMs = job.poll_after_ms || 1000;
      const due = job.position <= 1 || (job.eta_seconds !== null && job.eta_seconds !== undefined && job.eta_seconds <= 1);
      setTimeout(due ? poll : () => waitInLine(job), lineWaitMs);
    } else if (job.status === "queued" || job.status === "processing") {
      setTimeout(poll, job.poll_after_ms || 1000);
    }
  }

  function follow(id, view) {
    jobId = id;
    PQ.setFragment({ job: id });
    if (orderId) localStorage.setItem(jobKey(orderId), id);
    $("pay-form").hidden = true;
    $("tracker").hidden = false;
    $("next-step").hidden = true;
    $("retry").hidden = true;
    if (view && view.job_id === id && view.status) {
      jobCheckedAt = Date.now();
      show(view);
    } else {
      poll();
    }
  }

  // What the API answered a payment or a checkout that it refused, in words; the button comes back
  // where trying again can help.
  function refused(answer, button, doing, openingCheckout) {
    const error = answer.body && answer.body.error;
    if (error && error.code === "payment_in_progress" && error.details && error.details.job_id) {
      follow(error.details.job_id);
    } else if (error && error.code === "sold_out" && openingCheckout) {
      // No checkout was opened; one that expired may still see a late payment, which is refunded.
      problem("An item in your order has sold out, so this order cannot be paid. Anything paid for it is refunded.");
    } else if (error && error.code === "sold_out") {
      problem("An item in your order has sold out, so this order cannot be paid. Nothing was charged.");
    } else if (error && error.code === "order_not_payable") {
      localStorage.removeItem(jobKey(orderId));
      showClosed(error.details && error.details.order_status);
    } else if (answer.status === 401) {
      signInProblem(doing);
    } else if (answer.status === 503) {
      button.disabled = false;
      problem("The payment service is busy right now. Nothing was charged; please try again in a moment.");
    } else {
      button.disabled = false;
      problem((error && error.message) || "The payment could not be started. Please try again.");
    }
  }

  async function payFromWallet(button) {
    button.disabled = true;
    problem("");
    // One key per attempt at an order in this tab: a retried click replays the same job instead
    // of a second one; "Try again" after a failure starts a new attempt with a new key.
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
    if (answer.status === 202 || answer.status === 200) follow(answer.body.job_id, answer.body);
    else refused(answer, button, "pay");
  }

  // What the gateway's checkout handed back, sent as the payment of this order: Razorpay's signed
  // order, payment and signature; for Cashfree only the method (we know the checkout's order).
  async function submitGatewayPayment(body, key) {
    const button = $("pay-button");
    problem("");
    announce("Payment made. Checking it with the payment service…");
    let answer;
    try {
      answer = await PQ.call("POST", "/v1/payments", token, { body, headers: { "Idempotency-Key": key } });
    } catch (_) {
      // The gateway has the payment, and its webhook pays the order without us: reloading shows it.
      button.disabled = false;
      problem("We could not reach the payment service to confirm your payment. Do not pay again: reload this page in a moment to see it.");
      return;
    }
    if (answer.status === 202 || answer.status === 200) follow(answer.body.job_id, answer.body);
    else refused(answer, button, "pay");
  }

  function openRazorpay(checkout) {
    const button = $("pay-button");
    let failed = false;
    // Razorpay Standard Checkout (razorpay.com/docs/payments/payment-gateway/web-integration/standard/
    // integration-steps): the order we created, its amount, and a handler for what Checkout returns.
    const rzp = new window.Razorpay({
      key: checkout.razorpay.key_id,
      amount: checkout.amount_paise,
      currency: checkout.currency,
      order_id: checkout.razorpay.order_id,
      name: "Order #" + orderId,
      description: "Payment for order #" + orderId,
      handler: (response) =>
        submitGatewayPayment(
          {
            order_id: Number(orderId),
            method: "razorpay",
            razorpay_order_id: response.razorpay_order_id,
            razorpay_payment_id: response.razorpay_payment_id,
            razorpay_signature: response.razorpay_signature,
          },
          "razorpay-" + response.razorpay_payment_id,
        ),
      modal: {
        ondismiss: () => {
          button.disabled = false;
          problem(
            failed
              ? "The payment did not go through, and nothing was charged. You can pay again, the same way or another."
              : "The payment window was closed before paying. Nothing was charged.",
          );
        },
      },
    });
    // A declined attempt: Checkout stays open for another try, and says why itself.
    rzp.on("payment.failed", (response) => {
      failed = true;
      const why = response && response.error && response.error.description;
      announce("The payment did not go through" + (why ? ": " + why : ".") + " You can try again in the payment window.");
    });
    rzp.open();
  }

  async function openCashfree(checkout) {
    const button = $("pay-button");
    // Cashfree's JS SDK (cashfree.com/docs/payments/online/web/redirect): the checkout opens over this
    // page ("_modal"); the promise says whether a payment was made (paymentDetails) or not (error).
    const cashfree = window.Cashfree({ mode: checkout.cashfree.mode });
    const result = await cashfree.checkout({
      paymentSessionId: checkout.cashfree.payment_session_id,
      redirectTarget: "_modal",
    });
    if (result && result.paymentDetails) {
      submitGatewayPayment({ order_id: Number(orderId), method: "cashfree" }, PQ.newKey("cashfree-" + checkout.checkout_id));
      return;
    }
    button.disabled = false;
    problem("The payment window was closed before a payment was made. Nothing was charged.");
  }

  async function payAtGateway(method) {
    const button = $("pay-button");
    button.disabled = true;
    problem("");
    let answer;
    try {
      answer = await PQ.call("POST", "/v1/checkouts", token, { body: { order_id: Number(orderId), method } });
    } catch (_) {
      button.disabled = false;
      problem("We could not reach the payment service. Check your connection and try again.");
      return;
    }
    if (answer.status !== 200 && answer.status !== 201) {
      refused(answer, button, "pay", true);
      return;
    }
    const checkout = answer.body;
    if (checkout.job_id && checkout.status !== "created") {
      follow(checkout.job_id); // paid at the gateway already: its job says how it ended
      return;
    }
    const script = method === "razorpay" ? checkout.razorpay.script_url : checkout.cashfree.script_url;
    try {
      await PQ.loadScript(script, () => (method === "razorpay" ? window.Razorpay : window.Cashfree));
    } catch (_) {
      button.disabled = false;
      problem("The payment window could not be opened. Check your connection and try again; nothing was charged.");
      return;
    }
    if (method === "razorpay") openRazorpay(checkout);
    else await openCashfree(checkout);
  }

  function pay(event) {
    event.preventDefault();
    const chosen = $("pay-form").querySelector("input[name=method]:checked");
    const method = chosen ? chosen.value : "wallet";
    if (method === "wallet") payFromWallet($("pay-button"));
    else payAtGateway(method);
  }

  // Leave the line: the job ends cancelled if no processor has taken it yet (200); a gateway job is asked to
  // leave (202, cancel_requested), and its turn returns the money.
  async function leave() {
    $("leave").disabled = true;
    let answer;
    try {
      answer = await PQ.call("DELETE", "/v1/payments/" + encodeURIComponent(jobId), token);
    } catch (_) {
      $("leave").disabled = false;
      problem("We could not reach the payment service. Check your connection and try again.");
      return;
    }
    if (answer.status === 200 || answer.status === 202) {
      render(answer.body);
      return;
    }
    const error = answer.body && answer.body.error;
    $("leave").hidden = true;
    problem(error && error.code === "job_processing"
      ? "Your payment is already being processed, so it can no longer be stopped."
      : (error && error.message) || "The payment could not be stopped.");
  }

  function retry() {
    lastStatus = "";
    lastPosition = Infinity;
    servingSeen = 0;
    if (retryWith === "wallet") {
      // The failed attempt's key would replay the failed job: a new attempt needs a new key.
      sessionStorage.removeItem("pq.key." + orderId);
      payFromWallet($("retry"));
      return;
    }
    jobId = "";
    $("tracker").hidden = true;
    PQ.setFragment({ order: orderId, job: "" });
    loadOrder(true);
  }

  // The order, what it costs and how it can be paid. show: offer to pay it (or follow its live job);
  // otherwise only remember it for the amount the tracker shows.
  async function loadOrder(show) {
    orderAsked = true;
    let answer;
    try {
      answer = await PQ.call("GET", "/v1/orders/" + encodeURIComponent(orderId), token);
    } catch (_) {
      if (show) problem("We could not reach the payment service. Check your connection and reload the page.");
      return;
    }
    if (answer.status !== 200) {
      if (!show) return;
      if (answer.status === 401) signInProblem("pay");
      else if (answer.status === 404) problem("We can't find this order. Check the link you followed.");
      else problem("The payment service is busy; please reload the page in a moment.");
      return;
    }
    order = answer.body;
    if ($("order-line").hidden === false) showOrderLine(orderId);
    if (show) offer(order);
  }

  function offer(view) {
    const job = view.job;
    if (job && (job.status === "queued" || job.status === "processing" || job.status === "succeeded")) {
      follow(job.job_id);
      return;
    }
    if (view.status !== "pending") {
      showClosed(view.status, false);
      return;
    }
    $("order-total").textContent = money(view.total_paise, view.currency);
    const items = $("order-items");
    items.replaceChildren(
      ...view.items.map((item) => {
        const li = document.createElement("li");
        const name = item.name || "Product " + item.product_id;
        li.textContent = item.quantity + " × " + name + ", " + money(item.unit_price_paise * item.quantity, view.currency);
        return li;
      }),
    );
    const methods = new Set(view.payment_methods || ["wallet"]);
    let first = null;
    for (const label of $("pay-form").querySelectorAll(".method")) {
      const offered = methods.has(label.dataset.method);
      label.hidden = !offered;
      label.querySelector("input").disabled = !offered;
      if (offered && !first) first = label.querySelector("input");
    }
    if (first && !$("pay-form").querySelector("input[name=method]:checked:not(:disabled)")) first.checked = true;
    $("pay-order").textContent = "#" + view.order_id + " · " + money(view.total_paise, view.currency);
    $("pay-button").disabled = false;
    $("pay-form").hidden = false;
    showOrderLine(view.order_id);
  }

  function start() {
    const remembered = orderId && !jobId ? localStorage.getItem(jobKey(orderId)) : null;
    if (jobId || remembered) {
      follow(jobId || remembered);
    } else if (orderId) {
      loadOrder(true);
    } else {
      problem("No payment to show. Open this page from your shop's link.");
    }
  }

  $("retry").addEventListener("click", retry);
  $("pay-form").addEventListener("submit", pay);
  $("leave").addEventListener("click", leave);
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
