/* Helpers shared by the live and VOD players: an event log, the page state (body[data-state], the
 * `onair:state` event the tests and embedding pages watch) and a script loader that loads each URL once. */
(function () {
  "use strict";
  var scripts = {};

  function logger(api) {
    return function log(msg) {
      api.events.push({ t: Date.now(), msg: msg });
      if (api.events.length > 100) api.events.shift();
      if (window.console) console.info("[onair] " + msg);
    };
  }

  function stateSetter(api, log) {
    return function setState(state, reason) {
      if (api.state !== state) log("state " + state + (reason ? " (" + reason + ")" : ""));
      api.state = state;
      document.body.dataset.state = state;
      window.dispatchEvent(new CustomEvent("onair:state", { detail: { state: state, reason: reason || "" } }));
    };
  }

  function loadScript(src) {
    if (!scripts[src]) {
      scripts[src] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = src;
        s.onload = function () { resolve(); };
        s.onerror = function () { delete scripts[src]; reject(new Error("cannot load " + src)); };
        document.head.appendChild(s);
      });
    }
    return scripts[src];
  }

  window.onairCommon = { logger: logger, stateSetter: stateSetter, loadScript: loadScript };
})();
