// Shared by the progress and operator pages: settings from the URL fragment, the bearer token,
// and calls to the API. The fragment never reaches a server, so a token in it stays out of logs.
"use strict";

const PQ = (() => {
  const fragment = new URLSearchParams(location.hash.slice(1));

  function apiBase() {
    const api = fragment.get("api");
    if (!api) return "";
    try {
      const url = new URL(api);
      if (url.protocol === "http:" || url.protocol === "https:") return url.origin;
    } catch (_) {
      // fall through: an unusable value means the page's own origin
    }
    return "";
  }

  // The token moves from the fragment to this tab's session storage, and the address bar
  // (and this history entry) keeps only the settings that are not secret.
  function takeToken(storageKey, keep) {
    const given = fragment.get("token");
    if (given) sessionStorage.setItem(storageKey, given);
    const rest = new URLSearchParams();
    for (const name of keep) if (fragment.get(name)) rest.set(name, fragment.get(name));
    const hash = rest.toString();
    history.replaceState(null, "", location.pathname + location.search + (hash ? "#" + hash : ""));
    return sessionStorage.getItem(storageKey) || "";
  }

  function setFragment(values) {
    const next = new URLSearchParams(location.hash.slice(1));
    for (const [name, value] of Object.entries(values)) next.set(name, String(value));
    history.replaceState(null, "", location.pathname + location.search + "#" + next.toString());
  }

  async function call(method, path, token, { body, headers } = {}) {
    const init = { method, headers: { Authorization: "Bearer " + token, ...(headers || {}) }, cache: "no-store" };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(apiBase() + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, body: data };
  }

  function newKey(prefix) {
    const random = self.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
    return prefix + "-" + random;
  }

  // A gateway's checkout script (Razorpay's checkout.js, Cashfree's SDK), once: resolves when ready()
  // finds its API. The page's Content-Security-Policy decides which origins may serve one.
  function loadScript(url, ready) {
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let parsed = null;
      try {
        parsed = new URL(url);
      } catch (_) {
        parsed = null;
      }
      if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) {
        reject(new Error("not a script address"));
        return;
      }
      const script = document.createElement("script");
      script.src = parsed.href;
      script.async = true;
      script.onload = () => (ready() ? resolve() : reject(new Error("the script did not load its API")));
      script.onerror = () => reject(new Error("the script did not load"));
      document.head.appendChild(script);
    });
  }

  // Whether a bearer token has expired, from its own exp claim (read, never verified: only the API
  // decides). null when the token cannot be read at all: it is not a sign-in token.
  function tokenExpired(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
      return typeof claims.exp === "number" ? claims.exp * 1000 <= Date.now() : false;
    } catch (_) {
      return null;
    }
  }

  function showTokenForm(form, onToken, storageKey) {
    form.hidden = false;
    // A property, not a listener: asking again must not stack handlers.
    form.onsubmit = (event) => {
      event.preventDefault();
      const value = form.querySelector("input[name=token]").value.trim();
      if (!value) return;
      sessionStorage.setItem(storageKey, value);
      form.hidden = true;
      onToken(value);
    };
  }

  return { fragment, takeToken, setFragment, call, newKey, loadScript, tokenExpired, showTokenForm };
})();
