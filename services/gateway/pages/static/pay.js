// The payer's page, live: status from server-sent events (polling only where EventSource is
// missing or refused), a countdown to expiry, and copy buttons. Every word shown comes from the
// server (pages/payer.py); this script only puts it in place.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) return;
  var POLL_MS = 5000;
  var live = JSON.parse(root.getAttribute("data-live"));
  var deadline = Date.now() + live.seconds_left * 1000;

  function byId(id) { return document.getElementById(id); }

  function text(el, value) { if (el.textContent !== value) el.textContent = value; }

  function part(item, value, className) {
    var span = document.createElement("span");
    span.textContent = value;
    span.className = className;
    item.appendChild(span);
  }

  function render(model) {
    live = model;
    deadline = Date.now() + model.seconds_left * 1000;
    root.setAttribute("data-status", model.status);
    var status = byId("status");
    status.className = "status status-" + model.status;
    text(byId("status-label"), model.label);
    text(byId("status-detail"), model.detail);
    var notes = byId("status-notes");
    notes.textContent = "";
    model.notes.forEach(function (note) {
      var li = document.createElement("li");
      li.textContent = note;
      notes.appendChild(li);
    });
    notes.hidden = model.notes.length === 0;
    text(byId("amount-paid"), model.amount_paid);
    text(byId("amount-owed"), model.owed);
    byId("pay-instructions").hidden = !model.payable;
    byId("copy-amount").hidden = !model.payable;
    var rows = byId("payments-rows");
    rows.textContent = "";
    model.payments.forEach(function (p) {
      var li = document.createElement("li");
      part(li, p.tx_hash, "mono tx");
      part(li, p.amount + " " + root.getAttribute("data-symbol"), "amount");
      part(li, p.late ? p.status + " (late)" : p.status, "state");
      part(li, p.confirmations + " confirmations", "confirmations");
      rows.appendChild(li);
    });
    byId("payments-section").hidden = model.payments.length === 0;
    tick();
  }

  function tick() {
    var el = byId("countdown");
    if (!el) return;
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    var minutes = Math.floor(left / 60);
    var seconds = left % 60;
    var shown = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
    if (minutes >= 60) {
      shown = Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
    }
    text(el, left > 0 ? shown : "time is up");
    byId("countdown-row").hidden = !(live.status === "pending" || live.status === "partial");
  }

  function poll() {
    fetch(root.getAttribute("data-status-url"), { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (model) {
        if (model) render(model);
        if (!model || !model.final) setTimeout(poll, POLL_MS);
      })
      .catch(function () { setTimeout(poll, POLL_MS); });
  }

  function listen() {
    if (live.final) return;
    if (!window.EventSource) { setTimeout(poll, POLL_MS); return; }
    var source = new EventSource(root.getAttribute("data-events-url"));
    source.onopen = function () { root.setAttribute("data-live-connected", "true"); };
    source.addEventListener("status", function (e) { render(JSON.parse(e.data)); });
    source.addEventListener("end", function () { source.close(); });
    source.onerror = function () {
      // CONNECTING: the browser retries by itself. CLOSED: refused (too many pages, or the
      // server is stopping): fall back to asking now and then.
      if (source.readyState === EventSource.CLOSED) setTimeout(poll, POLL_MS);
    };
  }

  function copy(button) {
    var target = byId(button.getAttribute("data-copy-target"));
    var value = target.value !== undefined ? target.value : target.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      text(byId("copy-announce"), "Copied to the clipboard");
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done, function () { target.select(); });
    } else if (target.select) {
      target.select();
      try { if (document.execCommand("copy")) done(); } catch (err) { /* selected: the payer copies */ }
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { copy(button); });
  });
  byId("copy-amount").hidden = !live.payable;
  setInterval(tick, 1000);
  tick();
  listen();
  window.checkoutPage = { loadedAt: Date.now() };
})();
