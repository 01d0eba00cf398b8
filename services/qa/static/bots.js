// askbase bot pages (loaded with defer by bots_base.html; the CSP allows no inline script or handler).
// 1. Live status badges: poll the status JSON named by this script tag's data-status-url (faster while a
//    bot is starting) and update every [data-bot-status] badge and [data-bot-error] line in place.
// 2. The add form: show only the chosen platform's fields (all of them stay in the page without JS).
(function () {
  "use strict";
  var script = document.currentScript;
  var statusUrl = script && script.getAttribute("data-status-url");

  function each(selector, fn) { Array.prototype.forEach.call(document.querySelectorAll(selector), fn); }

  function attr(name, value) { return "[" + name + '="' + String(value).replace(/["\\]/g, "\\$&") + '"]'; }

  function pollStatus() {
    if (!statusUrl || !document.querySelector("[data-bot-status]")) return;
    function apply(bot) {
      var failed = bot.status === "error" && bot.last_error;
      each(attr("data-bot-status", bot.id), function (el) {
        el.textContent = bot.status;
        el.className = "badge badge-" + bot.status;
      });
      each(attr("data-bot-error", bot.id), function (el) {
        el.textContent = failed ? bot.last_error : "";
        el.hidden = !failed;
      });
    }
    function tick() {
      fetch(statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          var busy = false;
          ((data && data.bots) || []).forEach(function (bot) {
            apply(bot);
            if (bot.status === "starting") busy = true;
          });
          setTimeout(tick, busy ? 1000 : 5000);
        })
        .catch(function () { setTimeout(tick, 10000); });
    }
    setTimeout(tick, 1000);
  }

  function platformToggle() {
    var radios = document.querySelectorAll('input[name="platform"]');
    if (!radios.length) return;
    function sync() {
      var chosen = document.querySelector('input[name="platform"]:checked');
      each("fieldset[data-platform]", function (el) {
        el.hidden = !!chosen && el.getAttribute("data-platform") !== chosen.value;
      });
    }
    Array.prototype.forEach.call(radios, function (r) { r.addEventListener("change", sync); });
    sync();
  }

  pollStatus();
  platformToggle();
})();
