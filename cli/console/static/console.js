/* Vow console: refreshes a page's live region without a reload, only while the tab is visible.
 *
 * The page's <main id="live" data-live="URL" data-interval="MS"> is fetched again every MS
 * milliseconds with the header X-Vow-Live: 1, and the server answers with that region only.
 * Polling stops when the tab is hidden (document.visibilityState) and resumes, with an
 * immediate refresh, when it is visible again. A refresh never runs while a field of the region
 * has the focus, and text typed into a form field survives a refresh. No other script runs.
 */
(function () {
  "use strict";
  var region = document.getElementById("live");
  if (!region) { return; }
  var url = region.getAttribute("data-live");
  var interval = parseInt(region.getAttribute("data-interval"), 10) || 2000;
  var offline = document.getElementById("offline");
  var timer = null;
  var busy = false;
  var refreshes = 0;

  function editing() {
    var active = document.activeElement;
    return !!active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }

  /* The form's id attribute, read with getAttribute: a completion form holds a field named "id"
   * (the promise's), and form.id would be that field, not the form's id. */
  function typed() {
    var kept = [];
    region.querySelectorAll("textarea, input[type=text]").forEach(function (field) {
      var form = field.form ? field.form.getAttribute("id") : null;
      if (field.value !== field.defaultValue && form) {
        kept.push([form, field.name, field.value]);
      }
    });
    return kept;
  }

  function restore(kept) {
    kept.forEach(function (entry) {
      var form = document.getElementById(entry[0]);
      if (form && form.elements[entry[1]]) { form.elements[entry[1]].value = entry[2]; }
    });
  }

  function refresh() {
    if (busy || document.visibilityState !== "visible" || editing()) { return; }
    busy = true;
    fetch(url, { headers: { "X-Vow-Live": "1" }, credentials: "same-origin", cache: "no-store", redirect: "error" })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("text/html") !== 0) { throw new Error("not a page"); }
        return response.text();
      })
      .then(function (html) {
        if (editing()) { return; }
        var kept = typed();
        region.innerHTML = html;
        restore(kept);
        refreshes += 1;
        region.setAttribute("data-refreshes", String(refreshes));
        if (offline) { offline.hidden = true; }
      })
      .catch(function () { if (offline) { offline.hidden = false; } })
      .then(function () { busy = false; });
  }

  function start() {
    if (timer === null) { timer = window.setInterval(refresh, interval); }
    region.setAttribute("data-polling", "on");
  }

  function stop() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
    region.setAttribute("data-polling", "off");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); start(); } else { stop(); }
  });

  /* A form sent once shows it: its buttons are disabled until the next page. (A second send
   * would change nothing anyway: the form's token is the completion's idempotency key.) */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    window.setTimeout(function () {
      form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    }, 0);
  });

  if (document.visibilityState === "visible") { start(); } else { stop(); }
}());
