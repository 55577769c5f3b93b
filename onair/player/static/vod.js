/* onair VOD player: a Video's iframe_url. Plays the Video's HLS (hls_url; ?cmaf plays master-cmaf.m3u8)
 * with hls.js, native HLS as fallback; ?t=<sec> (also 1m30s, 1h2m3s) starts there. A Video still being
 * processed shows a message and polls info.json until it can play. Player settings (?player_id=N) are
 * applied by skin.js. document.body.dataset.state is loading|ready|playing|paused|ended|processing|error|
 * preview; window.onairPlayer exposes the <video>, the hls.js instance and the start offset. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("onair-config").textContent);
  var params = new URLSearchParams(window.location.search);
  var PROCESSING_POLL_MS = 5000;
  var root = document.getElementById("onair");
  var video = document.getElementById("onair-video");
  var playButton = document.getElementById("onair-play");
  var skin = window.onairSkin.apply(cfg.player, root, video);
  var userStarted = false;

  var api = {
    video: video,
    hls: null,
    state: "loading",
    info: cfg.info,
    settings: cfg.player || null,
    startAt: parseStart(params.get("t")),
    events: [],
    play: function () { userStarted = true; play(); }
  };
  window.onairPlayer = api;

  // "90", "90.5", "1m30s", "1h2m3s" -> seconds; anything else -> 0
  function parseStart(value) {
    if (!value) return 0;
    var m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$/.exec(value.trim());
    if (!m) return 0;
    var t = (Number(m[1]) || 0) * 3600 + (Number(m[2]) || 0) * 60 + (Number(m[3]) || 0);
    return isFinite(t) && t > 0 ? t : 0;
  }

  var log = window.onairCommon.logger(api);
  var setState = window.onairCommon.stateSetter(api, log);

  var loadScript = window.onairCommon.loadScript;

  function play() {
    if (!skin.autoplay && !userStarted) { setState("ready", "autoplay off"); return; }
    var p = video.play();
    if (p && p.catch) p.catch(function (err) {
      log("play() refused: " + err.name);
      if (err.name === "NotAllowedError" && !video.muted) {  // unmuted autoplay blocked: start muted
        video.muted = true;
        var again = video.play();
        if (again && again.catch) again.catch(function () { setState("ready", "autoplay refused"); });
      } else {
        setState("ready", "play refused");
      }
    });
  }

  function sourceUrl(info) {
    return params.has("cmaf") && info.hls_cmaf_url ? info.hls_cmaf_url : info.hls_url;
  }

  function startHls(url) {
    loadScript(cfg.vendor.hls).then(function () {
      var Hls = window.Hls;
      if (!Hls || !Hls.isSupported()) throw new Error("no MSE");
      var hls = new Hls({ startPosition: api.startAt > 0 ? api.startAt : -1, lowLatencyMode: false });
      var recovered = 0;
      api.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, function () { play(); });
      hls.on(Hls.Events.ERROR, function (_ev, d) {
        var code = d.response && d.response.code ? " " + d.response.code : "";
        log("hls.js " + (d.fatal ? "fatal " : "") + d.type + "/" + d.details + code);
        if (!d.fatal) return;
        if (recovered < 3 && d.type === Hls.ErrorTypes.MEDIA_ERROR) { recovered += 1; hls.recoverMediaError(); }
        else if (recovered < 3 && d.type === Hls.ErrorTypes.NETWORK_ERROR) { recovered += 1; hls.startLoad(); }
        else { hls.destroy(); api.hls = null; setState("error", d.details); }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }).catch(function (err) {
      if (video.canPlayType("application/vnd.apple.mpegurl")) {  // Safari, iOS: native HLS
        log("native HLS (" + err.message + ")");
        video.addEventListener("loadedmetadata", function () {
          if (api.startAt > 0) video.currentTime = api.startAt;
          play();
        }, { once: true });
        video.src = url;
      } else {
        setState("error", "cannot play HLS: " + err.message);
      }
    });
  }

  function pollProcessing() {
    fetch(cfg.info_url, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("info " + r.status); return r.json(); })
      .then(function (info) { api.info = info; start(); })
      .catch(function () { setTimeout(pollProcessing, PROCESSING_POLL_MS); });
  }

  function start() {
    var info = api.info || {};
    if (cfg.preview) { setState("preview"); return; }
    if (!info.playable) {
      setState(info.status === "error" ? "error" : "processing", "status " + info.status);
      if (info.status !== "error") setTimeout(pollProcessing, PROCESSING_POLL_MS);
      return;
    }
    if (info.poster) video.poster = info.poster;
    setState("loading");
    startHls(sourceUrl(info));
  }

  video.muted = skin.mute;
  video.autoplay = false;  // play() decides, after the start offset is set
  video.addEventListener("playing", function () { userStarted = true; setState("playing"); });
  video.addEventListener("pause", function () { if (!video.ended && api.state === "playing") setState("paused"); });
  video.addEventListener("ended", function () { setState("ended"); });
  playButton.addEventListener("click", function () { userStarted = true; play(); });
  start();
})();
