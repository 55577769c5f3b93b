/* onair web player: LL-HLS with hls.js (native HLS as fallback), ?dash for dash.js, ?no_low_latency for
 * the MPEG-TS HLS. State for embedders and tests: document.body.dataset.state is loading|playing|offline|error,
 * window.onairPlayer exposes the <video> element, the library instance and a few helpers.
 * Hooks for later features (360° projection, overlays): the "onair:info" and "onair:state" events on
 * window, the #onair-overlays layer and the projection-<name> class on #onair. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("onair-config").textContent);
  var params = new URLSearchParams(window.location.search);
  var mode = params.has("dash") ? "dash" : params.has("no_low_latency") ? "mpegts" : "llhls";
  // ?ll=0 keeps the CMAF HLS but turns hls.js low-latency mode off (the benchmarks' baseline)
  var lowLatency = mode === "llhls" && params.get("ll") !== "0";
  var RETRY_MS = 3000;          // offline: probe the stream this often
  var STALL_MS = 4000;          // no progress for this long while playing: check whether the stream ended
  var LOAD_TIMEOUT_MS = 20000;  // never started playing within this: check again

  var root = document.getElementById("onair");
  var video = document.getElementById("onair-video");
  var liveButton = document.getElementById("onair-live");
  var scripts = {};
  var generation = 0;
  var retryTimer = null;
  var watchdog = null;
  var mediaRecoveries = 0;

  var api = {
    video: video,
    mode: mode,
    lowLatency: lowLatency,
    state: "loading",
    info: cfg.info,
    hls: null,
    dash: null,
    events: [],
    start: start,
    goLive: goLive,
    latency: latency
  };
  window.onairPlayer = api;

  function log(msg) {
    api.events.push({ t: Date.now(), msg: msg });
    if (api.events.length > 100) api.events.shift();
    if (window.console) console.info("[onair] " + msg);
  }

  function setState(state, reason) {
    if (api.state !== state) log("state " + state + (reason ? " (" + reason + ")" : ""));
    api.state = state;
    document.body.dataset.state = state;
    window.dispatchEvent(new CustomEvent("onair:state", { detail: { state: state, reason: reason || "" } }));
  }

  function setInfo(info) {
    api.info = info;
    root.className = "onair projection-" + String(info.projection || "regular").replace(/[^a-z0-9_-]/gi, "");
    window.dispatchEvent(new CustomEvent("onair:info", { detail: info }));
  }

  function sourceUrl(info) {
    if (mode === "dash") return info.dash_url;
    if (mode === "mpegts") return info.hls_mpegts_url;
    return info.hls_cmaf_url;
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

  function probe(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) { return r.ok; }, function () { return false; });
  }

  function teardown() {
    generation += 1;
    clearTimeout(retryTimer);
    clearInterval(watchdog);
    retryTimer = null;
    watchdog = null;
    if (api.hls) { api.hls.destroy(); api.hls = null; }
    if (api.dash) { api.dash.reset(); api.dash = null; }
    if (video.getAttribute("src")) { video.removeAttribute("src"); video.load(); }
  }

  function offline(reason) {
    teardown();
    setState("offline", reason);
    retryTimer = setTimeout(start, RETRY_MS);
  }

  function fail(reason) {
    teardown();
    setState("error", reason);
    retryTimer = setTimeout(start, 4 * RETRY_MS);
  }

  function fetchInfo() {
    return fetch(cfg.info_url, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("info " + r.status); return r.json(); });
  }

  // a fatal error, an ended playlist or a stall: offline when the stream is no longer live (an ended
  // stream's playlists may still answer, with EXT-X-ENDLIST) or its source is gone, else start over
  function recheck(gen, reason) {
    if (gen !== generation) return;
    log("recheck: " + reason);
    fetchInfo().then(function (info) {
      if (gen !== generation) return null;
      setInfo(info);
      if (!info.live) { offline(reason + ", stream not live"); return null; }
      return probe(sourceUrl(info)).then(function (ok) {
        if (gen !== generation) return;
        if (ok) { teardown(); retryTimer = setTimeout(start, 1000); }
        else offline(reason + ", source gone");
      });
    }).catch(function (err) { if (gen === generation) offline(String(err && err.message || err)); });
  }

  function start() {
    teardown();
    var gen = generation;
    if (api.state !== "offline") setState("loading");
    fetchInfo()
      .then(function (info) {
        if (gen !== generation) return null;
        setInfo(info);
        if (!info.live) { offline("not live"); return null; }
        if (info.screenshot) setPoster(info.screenshot + "?t=" + Date.now());
        return probe(sourceUrl(info)).then(function (ok) {
          if (gen !== generation) return;
          if (!ok) { offline("source not ready"); return; }
          mediaRecoveries = 0;
          setState("loading");
          startWatchdog(gen);
          if (mode === "dash") startDash(sourceUrl(info), gen);
          else startHls(sourceUrl(info), gen);
        });
      })
      .catch(function (err) { if (gen === generation) offline(String(err && err.message || err)); });
  }

  // the poster is the stream's last screenshot, set only once it loads (right after going live there is none)
  function setPoster(url) {
    var img = new Image();
    img.onload = function () { if (!video.poster || api.state !== "playing") video.poster = url; };
    img.src = url;
  }

  function play() {
    var p = video.play();
    if (p && p.catch) p.catch(function (err) { log("play() refused: " + err.name); });
  }

  function startHls(url, gen) {
    loadScript(cfg.vendor.hls).then(function () {
      if (gen !== generation) return;
      var Hls = window.Hls;
      if (!Hls || !Hls.isSupported()) throw new Error("no MSE");
      var hls = new Hls({ lowLatencyMode: lowLatency, backBufferLength: 30, liveDurationInfinity: true });
      api.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, function () { play(); });
      hls.on(Hls.Events.ERROR, function (_ev, d) {
        var code = d.response && d.response.code ? " " + d.response.code : "";
        log("hls.js " + (d.fatal ? "fatal " : "") + d.type + "/" + d.details + code);
        if (!d.fatal) return;
        if (d.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries < 2) {
          mediaRecoveries += 1;
          hls.recoverMediaError();
          return;
        }
        recheck(gen, "hls.js " + d.details);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }).catch(function (err) {
      if (gen !== generation) return;
      if (video.canPlayType("application/vnd.apple.mpegurl")) {  // Safari, iOS: native (LL-)HLS
        log("native HLS (" + err.message + ")");
        video.src = url;
        play();
      } else {
        fail("cannot play HLS: " + err.message);
      }
    });
  }

  function startDash(url, gen) {
    loadScript(cfg.vendor.dash).then(function () {
      if (gen !== generation) return;
      var dashjs = window.dashjs;
      var player = dashjs.MediaPlayer().create();
      api.dash = player;
      player.updateSettings({
        debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
        streaming: { liveCatchup: { enabled: true } }
      });
      var ev = dashjs.MediaPlayer.events;
      player.on(ev.ERROR, function (e) {
        log("dash.js error " + JSON.stringify(e.error || e).slice(0, 200));
        recheck(gen, "dash.js error");
      });
      player.on(ev.PLAYBACK_ENDED, function () { recheck(gen, "dash ended"); });
      player.initialize(video, url, true);
    }).catch(function (err) { if (gen === generation) fail("cannot play DASH: " + err.message); });
  }

  function startWatchdog(gen) {
    var lastTime = -1;
    var lastProgress = Date.now();
    var startedAt = Date.now();
    watchdog = setInterval(function () {
      if (gen !== generation) return;
      var now = Date.now();
      if (video.currentTime !== lastTime || (video.paused && !video.ended && api.state === "playing")) {
        lastTime = video.currentTime;
        lastProgress = now;
      }
      if (api.state === "playing" && now - lastProgress > STALL_MS) recheck(gen, "stalled");
      else if (api.state === "loading" && now - startedAt > LOAD_TIMEOUT_MS) recheck(gen, "no start");
      updateLiveButton();
    }, 1000);
  }

  // seconds behind the live edge, or null when unknown
  function behindEdge() {
    if (api.hls && api.hls.liveSyncPosition != null) return api.hls.liveSyncPosition - video.currentTime;
    if (api.dash && api.dash.isDynamic && api.dash.isDynamic()) {
      return api.dash.getCurrentLiveLatency() - api.dash.getTargetLiveDelay();
    }
    if (video.seekable.length) return video.seekable.end(video.seekable.length - 1) - 3 - video.currentTime;
    return null;
  }

  function updateLiveButton() {
    var behind = behindEdge();
    liveButton.classList.toggle("at-edge", behind !== null && behind < 2);
  }

  function goLive() {
    if (api.hls && api.hls.liveSyncPosition != null) {
      video.currentTime = api.hls.liveSyncPosition;
    } else if (api.dash) {
      if (typeof api.dash.seekToOriginalLive === "function") api.dash.seekToOriginalLive();
      else api.dash.seek(api.dash.duration());
    } else if (video.seekable.length) {
      video.currentTime = Math.max(0, video.seekable.end(video.seekable.length - 1) - 3);
    }
    play();
    updateLiveButton();
  }

  // latency figures: pdt_ms = now - EXT-X-PROGRAM-DATE-TIME of the frame playing (hls.js only)
  function latency() {
    var out = { pdt_ms: null, edge_s: null, hls_latency_s: null, dash_latency_s: null };
    if (api.hls) {
      var d = api.hls.playingDate;
      if (d) out.pdt_ms = Date.now() - d.getTime();
      out.hls_latency_s = api.hls.latency;
    }
    if (api.dash && api.dash.isDynamic && api.dash.isDynamic()) out.dash_latency_s = api.dash.getCurrentLiveLatency();
    out.edge_s = behindEdge();
    return out;
  }

  video.muted = true;
  video.addEventListener("playing", function () { setState("playing"); });
  video.addEventListener("ended", function () { recheck(generation, "ended"); });
  liveButton.addEventListener("click", goLive);
  setInfo(cfg.info);
  start();
})();
