// The live operator page: polls the operator routes, keeps a few minutes of history in memory for
// the charts, and offers the DLQ redrive and the drop of a poison message. Every call needs a token with
// the operator scope.
"use strict";

(() => {
  const TOKEN_KEY = "pq.operator-token";
  const WINDOW_S = 600;
  const every = Math.max(250, Number(PQ.fragment.get("every")) || 2000);
  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat();
  const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
  const history = []; // {t, depth, inFlight, throughput, errorRate, p95}
  let token = PQ.takeToken(TOKEN_KEY, ["every", "api"]);
  let timer = 0;

  function problem(text) {
    $("problem").textContent = text;
    $("problem").hidden = !text;
  }

  const seconds = (s) =>
    s === null || s === undefined ? "–" : s === 0 ? "0 s" : s < 10 ? s.toFixed(2) + " s" : Math.round(s) + " s";
  const rate = (r) => (r === null || r === undefined ? "–" : percent.format(r));

  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return seconds(s);
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s % 60) + " s";
  }

  // A sparkline over the samples this page has taken: it spans from the first sample (at least
  // 30 s) up to WINDOW_S, so a freshly opened page already shows a readable line.
  function chart(id, label, series, unit) {
    const svg = $(id);
    const points = series.filter((p) => p.v !== null && p.v !== undefined);
    const now = Date.now();
    const span = Math.min(WINDOW_S * 1000, Math.max(30000, points.length ? now - points[0].t : 0));
    const top = Math.max(1, ...points.map((p) => p.v));
    const xy = points.map((p) => [300 - ((now - p.t) / span) * 300, 58 - (p.v / top) * 54]);
    const line = xy.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" ");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    // Axes (left and bottom) and a gridline at half the top value, under the data.
    for (const [x1, y1, x2, y2, kind] of [[0, 0, 0, 60, "axis"], [0, 60, 300, 60, "axis"], [0, 31, 300, 31, "grid"]]) {
      const rule = document.createElementNS(ns, "line");
      Object.entries({ x1, y1, x2, y2 }).forEach(([k, v]) => rule.setAttribute(k, String(v)));
      rule.setAttribute("class", kind);
      svg.appendChild(rule);
    }
    if (xy.length) {
      const area = document.createElementNS(ns, "polygon");
      area.setAttribute("points", xy[0][0].toFixed(1) + ",60 " + line + " " + xy[xy.length - 1][0].toFixed(1) + ",60");
      svg.appendChild(area);
      const path = document.createElementNS(ns, "polyline");
      path.setAttribute("points", line);
      svg.appendChild(path);
    }
    const current = points.length ? points[points.length - 1].v : null;
    const peak = points.length ? Math.max(...points.map((p) => p.v)) : null;
    const fmt = (v) => (v === null ? "no data" : number.format(Math.round(v * 100) / 100) + unit);
    const summary = "now " + fmt(current) + ", peak " + fmt(peak);
    svg.setAttribute("aria-label", label + ": " + summary);
    const figure = svg.closest("figure");
    figure.querySelector(".chart-values").textContent = summary;
    // The value axis runs from 0 to the top of the line; the time axis from the span's start to now.
    figure.querySelector(".y-max").textContent = number.format(Math.round(top * 100) / 100) + unit;
    figure.querySelector(".y-min").textContent = "0";
    const start = figure.querySelector(".x-start");
    const end = figure.querySelector(".x-end");
    start.textContent = clock(now - span);
    start.dateTime = new Date(now - span).toISOString();
    end.textContent = clock(now);
    end.dateTime = new Date(now).toISOString();
  }

  const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  function renderWindows(windows) {
    const body = $("windows-body");
    body.replaceChildren();
    for (const name of ["1m", "5m", "60m"]) {
      const w = windows[name];
      if (!w) continue;
      const row = document.createElement("tr");
      const cells = [name, number.format(w.processed), number.format(w.failed), number.format(w.failed_deliveries),
        rate(w.success_rate),
        seconds(w.avg_wait_s), seconds(w.p50_wait_s), seconds(w.p95_wait_s)];
      cells.forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        if (i === 5) cell.className = "wide-only"; // the average: p50 and p95 say more, and a phone lacks room
        cell.textContent = text;
        row.appendChild(cell);
      });
      body.appendChild(row);
    }
  }

  const DLQ_COLUMNS = ["Job", "User", "Order", "Last error", "Deliveries", "In the DLQ for"];

  // The DLQ's jobs as the processor saw them go there: what the runbook's "find the cause" reads. Each
  // job's message can be dropped for good (POST /v1/dlq/jobs/{job_id}/drop) when it can never succeed.
  function renderDeadLettered(jobs) {
    const body = $("dlq-jobs");
    body.replaceChildren();
    $("dlq-jobs-wrap").hidden = !jobs || jobs.length === 0;
    for (const job of jobs || []) {
      const row = document.createElement("tr");
      const cells = [job.job_id || "(none named)", job.user_id || "–", job.order_id === null ? "–" : String(job.order_id),
        job.last_error, number.format(job.deliveries), duration(job.age_s)];
      cells.forEach((text, i) => {
        const cell = document.createElement("td");
        if (i === 0 || i === 3) cell.className = "wraps"; // a job id and an error: long, so they wrap
        cell.dataset.label = DLQ_COLUMNS[i]; // the row's heading when it stacks on a phone (pq.css)
        cell.textContent = text;
        row.appendChild(cell);
      });
      const action = document.createElement("td");
      if (job.job_id) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Drop";
        button.setAttribute("aria-label", "Drop job " + job.job_id);
        button.addEventListener("click", () => dropJob(job.job_id, button));
        action.appendChild(button);
      }
      row.appendChild(action);
      body.appendChild(row);
    }
  }

  // Irreversible, so asked once more: the job ends failed and its message leaves the DLQ for good.
  async function dropJob(id, button) {
    if (!window.confirm("Drop job " + id + "? It ends failed (dropped_by_operator) and its message leaves " +
      "the DLQ for good; a redrive can no longer pay it.")) return;
    const out = $("drop-result");
    button.disabled = true;
    try {
      const answer = await PQ.call("POST", "/v1/dlq/jobs/" + encodeURIComponent(id) + "/drop", token);
      if (refused(answer.status)) return;
      const r = answer.body || {};
      out.textContent = answer.status === 200
        ? "Dropped job " + id + " (by " + r.dropped_by + "): it has ended " + r.status + "."
        : "Not dropped: " + ((r.error && r.error.message) || "status " + answer.status) + ".";
    } catch (_) {
      out.textContent = "Drop failed: the API is unreachable.";
    }
    refresh();
  }

  const rupees = new Intl.NumberFormat("en-IN", { style: "currency", currency: "INR" });

  // Refunds the gateway failed after every attempt (owed), each with its retry button; the operator's
  // retry gives it one attempt more, sent by the sweeper within a minute (POST /v1/refunds/{id}/retry).
  function renderRefunds(refunds) {
    $("refunding").textContent = number.format(refunds.refunding) +
      (refunds.refunding ? " (" + rupees.format(refunds.refunding_paise / 100) + ")" : "");
    $("refunds-text").textContent = refunds.owed === 0
      ? "None: every refund went through or is on its way (" + number.format(refunds.refunding) + " refunding)."
      : number.format(refunds.owed) + (refunds.owed === 1 ? " refund" : " refunds") + ", " +
        rupees.format(refunds.owed_paise / 100) + ", failed at the gateway after every attempt. " +
        "Fix the cause at the gateway, then retry.";
    // Refunds the merchant made at the gateway for orders we fulfilled: not owed, but the shop must know.
    $("after-fulfilment-text").textContent = refunds.after_fulfilment === 0 ? "" :
      number.format(refunds.after_fulfilment) + " refunded at the gateway after fulfilment in 30 days (" +
      rupees.format(refunds.after_fulfilment_paise / 100) + "): orders " +
      refunds.refunds_after_fulfilment.map((r) => r.order_id).join(", ") + " stay paid.";
    const body = $("owed-refunds");
    body.replaceChildren();
    $("owed-wrap").hidden = refunds.owed_refunds.length === 0;
    for (const r of refunds.owed_refunds) {
      const row = document.createElement("tr");
      [String(r.refund_id), String(r.order_id), r.gateway, rupees.format(r.amount_paise / 100),
        number.format(r.attempts), r.last_error || "–", duration(r.age_s)].forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.textContent = text;
        row.appendChild(cell);
      });
      const action = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Retry refund " + r.refund_id;
      button.addEventListener("click", () => retryRefund(r.refund_id, button));
      action.appendChild(button);
      row.appendChild(action);
      body.appendChild(row);
    }
  }

  async function retryRefund(id, button) {
    const out = $("retry-result");
    button.disabled = true;
    try {
      const answer = await PQ.call("POST", "/v1/refunds/" + id + "/retry", token);
      if (refused(answer.status)) return;
      const r = answer.body || {};
      out.textContent = answer.status !== 202
        ? "Retry failed: " + ((r.error && r.error.message) || "status " + answer.status) + "."
        : r.outcome === "scheduled"
          ? "Refund " + id + " will be sent again within a minute."
          : "Refund " + id + " is no longer owed (" + r.state + ").";
    } catch (_) {
      out.textContent = "Retry failed: the API is unreachable.";
    }
    refresh();
  }

  function render(queue, metrics, db) {
    const minute = (metrics && metrics.windows && metrics.windows["1m"]) || {};
    $("depth").textContent = number.format(queue.depth);
    $("in-flight").textContent = number.format(queue.in_flight);
    $("throughput").textContent = number.format(queue.throughput_per_minute);
    $("eta-drain").textContent = queue.eta_to_drain_s === null ? "stalled" : duration(queue.eta_to_drain_s);
    $("oldest").textContent = duration(queue.oldest_message_age_s);
    $("success-rate").textContent = rate(minute.success_rate);
    $("decline-rate").textContent = rate(minute.decline_rate);
    $("error-rate").textContent = rate(minute.error_rate);
    $("wait").textContent = seconds(minute.p50_wait_s) + " / " + seconds(minute.p95_wait_s);
    $("dlq-depth").textContent = number.format(queue.dlq_depth);
    $("dlq-depth").dataset.alert = queue.dlq_depth > 0 ? "yes" : "no";
    $("awaiting-gateway").textContent = number.format(queue.awaiting_gateway);
    $("refunds-failed").textContent = number.format(queue.gateway_refunds_failed);
    $("refunds-failed").dataset.alert = queue.gateway_refunds_failed > 0 ? "yes" : "no";
    if (db && db.reachable) {
      $("db-connections").textContent = number.format(db.connections_in_use) + " / " + number.format(db.max_connections);
      $("health").textContent = "Database reachable (" + db.latency_ms + " ms)";
      $("health").dataset.state = "ok";
    } else {
      $("db-connections").textContent = "–";
      $("health").textContent = "Database unreachable";
      $("health").dataset.state = "down";
    }
    $("dlq-text").textContent =
      queue.dlq_depth === 0
        ? "Empty: no job has run out of deliveries."
        : number.format(queue.dlq_depth) + (queue.dlq_depth === 1 ? " job" : " jobs") +
          " ran out of deliveries. Fix the cause, then send them back to the queue.";
    $("redrive").disabled = queue.dlq_depth === 0;
    renderDeadLettered(queue.dlq_jobs);
    renderRefunds(queue.refunds);
    if (metrics) renderWindows(metrics.windows);

    const now = Date.now();
    history.push({ t: now, depth: queue.depth, throughput: queue.throughput_per_minute,
      errorRate: minute.error_rate === null || minute.error_rate === undefined ? null : minute.error_rate * 100,
      p95: minute.p95_wait_s });
    while (history.length && now - history[0].t > WINDOW_S * 1000) history.shift();
    chart("chart-depth", "Queue depth", history.map((h) => ({ t: h.t, v: h.depth })), "");
    chart("chart-throughput", "Throughput per minute", history.map((h) => ({ t: h.t, v: h.throughput })), "");
    chart("chart-errors", "Error rate", history.map((h) => ({ t: h.t, v: h.errorRate })), " %");
    chart("chart-wait", "Wait p95", history.map((h) => ({ t: h.t, v: h.p95 })), " s");
    $("updated").textContent = new Date(now).toLocaleTimeString();
    $("updated").dateTime = new Date(now).toISOString();
  }

  function refused(status) {
    if (status === 401 || status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      problem(status === 401
        ? "The token was refused (expired or not ours). Paste a new one."
        : "This token lacks the operator scope. Use make token OPERATOR=1.");
      ["live", "charts", "dlq", "refunds", "windows"].forEach((id) => ($(id).hidden = true));
      clearTimeout(timer);
      askForToken();
      return true;
    }
    return false;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [queue, metrics, db] = await Promise.all([
        PQ.call("GET", "/v1/queue/status", token),
        PQ.call("GET", "/v1/metrics", token),
        PQ.call("GET", "/health/db", token),
      ]);
      if (refused(queue.status)) return;
      if (queue.status === 200) {
        problem("");
        ["live", "charts", "dlq", "refunds", "windows"].forEach((id) => ($(id).hidden = false));
        render(queue.body, metrics.status === 200 ? metrics.body : null, db.body);
      } else {
        problem("The queue status route answered " + queue.status + "; retrying.");
      }
    } catch (_) {
      $("health").textContent = "API unreachable; retrying";
      $("health").dataset.state = "down";
    }
    timer = setTimeout(refresh, every);
  }

  async function redrive() {
    const button = $("redrive");
    const out = $("redrive-result");
    button.disabled = true;
    out.textContent = "Redriving…";
    try {
      const answer = await PQ.call("POST", "/v1/dlq/redrive", token);
      if (refused(answer.status)) return;
      const r = answer.body || {};
      if (answer.status === 200) {
        out.textContent = "Moved " + number.format(r.moved) + (r.moved === 1 ? " job" : " jobs") + " back to the payment queue.";
      } else if (answer.status === 202 && r.status === "running") {
        out.textContent = "A redrive is already running (" + number.format(r.moved || 0) + " moved so far).";
      } else if (answer.status === 202) {
        out.textContent = "Redrive started; the queue moves the jobs back over the next moments.";
      } else {
        out.textContent = "Redrive failed: " + ((r.error && r.error.message) || "status " + answer.status) + ".";
      }
    } catch (_) {
      out.textContent = "Redrive failed: the API is unreachable.";
    }
    refresh();
  }

  function askForToken() {
    const form = $("token-form");
    if (!form.hidden) return;
    PQ.showTokenForm(form, (value) => { token = value; refresh(); }, TOKEN_KEY);
  }

  $("window-minutes").textContent = String(WINDOW_S / 60);
  $("redrive").addEventListener("click", redrive);
  if (token) refresh();
  else askForToken();
})();
