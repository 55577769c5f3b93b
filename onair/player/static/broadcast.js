/* onair broadcast page: shows what the broadcast's status says, soon after it changes. Pending: the pending message
 * over the poster; Live: the live player of the chosen stream in an iframe (player.js, with the
 * broadcast's player settings); Paused/Finished: their messages (Finished with show_dvr_after_finish: the
 * recording's VOD player). It polls info.json every couple of seconds with a per-tab client id, which
 * is how the server counts spectators. document.body.dataset.status is pending|live|paused|finished;
 * window.onairBroadcast exposes the last info and the client id. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("onair-config").textContent);
  var root = document.getElementById("onair");
  var frame = document.getElementById("onair-frame");
  var poster = document.getElementById("onair-poster");
  var statusBox = document.getElementById("onair-status");
  window.onairSkin.apply(cfg.player, root, null);

  function clientId() {
    var key = "onair-spectator";
    var id = null;
    try { id = window.sessionStorage.getItem(key); } catch (e) { /* storage off: a fresh id per load */ }
    if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
      var bytes = new Uint8Array(12);
      window.crypto.getRandomValues(bytes);
      id = Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
      try { window.sessionStorage.setItem(key, id); } catch (e) { /* ignore */ }
    }
    return id;
  }

  var api = { info: null, client: clientId(), polls: 0, frameUrl: null };
  window.onairBroadcast = api;

  function pollUrl() {
    var u = new URL(cfg.info_url, window.location.href);
    u.searchParams.set("client", api.client);
    return u.href;
  }

  function setFrame(url, isVod) {
    if (api.frameUrl === url) return;
    api.frameUrl = url;
    frame.classList.toggle("vod", !!isVod);
    frame.src = url || "about:blank";  // leaving Live stops the stream's player
  }

  function render(info) {
    api.info = info;
    var status = String(info.status || "Pending").toLowerCase();
    document.body.dataset.status = status;
    document.body.dataset.state = status === "live" ? "live" : "message";
    var stream = status === "live" ? info.stream : null;
    var vod = status === "finished" ? info.video : null;
    setFrame(stream ? stream.iframe_url : vod ? vod.iframe_url : null, !!vod);
    statusBox.textContent = info.message || (status === "live" && !stream ? "No stream in this broadcast." : "");
    statusBox.hidden = !!(stream || vod) || !statusBox.textContent;
    var posterUrl = !stream && !vod ? info.poster : null;
    if (posterUrl && poster.getAttribute("src") !== posterUrl) poster.src = posterUrl;
    poster.hidden = !posterUrl;
    window.dispatchEvent(new CustomEvent("onair:broadcast", { detail: info }));
  }

  function poll() {
    fetch(pollUrl(), { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("info " + r.status); return r.json(); })
      .then(function (info) { api.polls += 1; render(info); })
      .catch(function (err) { if (window.console) console.info("[onair] broadcast poll: " + err.message); })
      .then(function () { setTimeout(poll, (api.info && api.info.poll_ms) || 2000); });
  }

  render(cfg.info);
  poll();  // at once: counts this spectator
})();
