// A little progressive enhancement: passport tabs and the live operations panel. Every page works without it.
(function () {
  "use strict";

  function tabs(root) {
    var buttons = root.querySelectorAll('[role="tab"]');
    var panes = root.querySelectorAll('[role="tabpanel"]');
    function show(i) {
      buttons.forEach(function (b, j) { b.setAttribute("aria-selected", String(i === j)); });
      panes.forEach(function (p, j) { p.hidden = i !== j; });
    }
    buttons.forEach(function (b, i) { b.addEventListener("click", function () { show(i); }); });
    root.classList.add("js");
    show(0);
  }

  function live(el) {
    var every = Math.max(2, parseInt(el.getAttribute("data-every") || "5", 10)) * 1000;
    var url = el.getAttribute("data-live");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { el.innerHTML = html; el.removeAttribute("data-stale"); })
        .catch(function () { el.setAttribute("data-stale", "true"); })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-tabs]").forEach(tabs);
    document.querySelectorAll("[data-live]").forEach(live);
  });
})();
