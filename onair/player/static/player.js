/* onair web player: LL-HLS with hls.js (native HLS as fallback), ?dash for dash.js, ?no_low_latency for
 * the MPEG-TS HLS, ?protocol=webrtc for WHEP (whep.js; LL-HLS when WebRTC fails). State for embedders and tests: document.body.dataset.state is loading|playing|offline|error,
 * window.onairPlayer exposes the <video> element, the library instance and a few helpers.
 * Also: 360°/180° projections (projection.js, three.js; onairPlayer.projection), HTML overlays from
 * info.json (polled, iframes in #onair-overlays) and a DVR seek bar when the stream has DVR on.
 * Events for embedders: "onair:info" and "onair:state" on window.
 * Player settings (?player_id=N, cfg.player) are applied by skin.js; with autoplay off the page loads the
 * stream and waits in state "ready" for a click on the play button (or the native controls). */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("onair-config").textContent);
  var params = new URLSearchParams(window.location.search);
  var mode = params.get("protocol") === "webrtc" ? "webrtc" : params.has("dash") ? "dash"
    : params.has("no_low_latency") ? "mpegts" : "llhls";
  // ?ll=0 keeps the CMAF HLS but turns hls.js low-latency mode off (the benchmarks' baseline)
  var lowLatency = (mode === "llhls" || mode === "webrtc") && params.get("ll") !== "0";
  var RETRY_MS = 3000;          // offline: probe the stream this often
  var STALL_MS = 4000;          // no progress for this long while playing: check whether the stream ended
  var LOAD_TIMEOUT_MS = 20000;  // never started playing within this: check again
  var INFO_POLL_MS = 2500;      // with html_overlay on: overlay changes show up within this
  var INFO_IDLE_MS = 30000;     // otherwise (projection, DVR or html_overlay switched) within this
  var PROJECTIONS = ["vr360", "vr180", "vr360tb"];

  var root = document.getElementById("onair");
  var video = document.getElementById("onair-video");
  var liveButton = document.getElementById("onair-live");
  var muteButton = document.getElementById("onair-mute");
  var overlayLayer = document.getElementById("onair-overlays");
  var dvrBar = document.getElementById("onair-dvr");
  var seekBar = document.getElementById("onair-seek");
  var behindLabel = document.getElementById("onair-behind");
  var generation = 0;
  var retryTimer = null;
  var watchdog = null;
  var mediaRecoveries = 0;
  var skin = window.onairSkin ? window.onairSkin.apply(cfg.player, root, video) : { autoplay: true, mute: true };
  var userStarted = false;      // the viewer pressed play (or playback ran once): play() no longer waits
  var playButton = document.getElementById("onair-play");

  var api = {
    video: video,
    mode: mode,
    lowLatency: lowLatency,
    state: "loading",
    info: cfg.info,
    settings: cfg.player || null,
    hls: null,
    dash: null,
    whep: null,         // the WHEP session while playing over WebRTC
    fallback: null,     // why WebRTC was given up for LL-HLS
    events: [],
    projection: null,   // {mode, renderer, frames, ...} once a projected stream is rendered
    overlays: [],       // the overlays laid out last, with their box in page pixels
    start: start,
    goLive: goLive,
    latency: latency
  };
  window.onairPlayer = api;

  var log = window.onairCommon.logger(api);
  var setState = window.onairCommon.stateSetter(api, log);

  function setInfo(info) {
    api.info = info;
    var projection = String(info.projection || "regular").replace(/[^a-z0-9_-]/gi, "");
    root.className = root.className.replace(/\bprojection-\S+/g, "").trim() + " projection-" + projection;
    setProjection(projection);
    layoutOverlays();
    updateDvr();
    if (info.live && info.screenshot_ready && info.screenshot !== posterOf) setPoster(info.screenshot);
    window.dispatchEvent(new CustomEvent("onair:info", { detail: info }));
  }

  function sourceUrl(info) {
    if (mode === "dash") return info.dash_url;
    if (mode === "mpegts") return info.hls_mpegts_url;
    return info.hls_cmaf_url;  // also what WebRTC checks the stream with and falls back to
  }

  var loadScript = window.onairCommon.loadScript;

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
    if (api.whep) { api.whep.stop(); api.whep = null; }
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
        return probe(sourceUrl(info)).then(function (ok) {
          if (gen !== generation) return;
          if (!ok) { offline("source not ready"); return; }
          mediaRecoveries = 0;
          setState("loading");
          startWatchdog(gen);
          if (mode === "dash") startDash(sourceUrl(info), gen);
          else if (mode === "webrtc" && info.whep_url) startWebrtc(info, gen);
          else startHls(sourceUrl(info), gen);
        });
      })
      .catch(function (err) { if (gen === generation) offline(String(err && err.message || err)); });
  }

  // the poster is the stream's last screenshot, asked for only once info.json says it exists (right after
  // going live there is none: a request then would only be a 404 in the page's network log)
  var posterOf = null;  // the screenshot URL the poster was loaded from (once per stream URL)
  function setPoster(screenshot) {
    posterOf = screenshot;
    var url = screenshot + "?t=" + Date.now();
    var img = new Image();
    img.onload = function () { if (!video.poster || api.state !== "playing") video.poster = url; };
    img.src = url;
  }

  function play() {
    if (!skin.autoplay && !userStarted) {  // autoplay off: loaded, waiting for the viewer
      if (api.state === "loading") setState("ready", "autoplay off");
      return;
    }
    var p = video.play();
    if (p && p.catch) p.catch(function (err) {
      log("play() refused: " + err.name);
      // a browser may refuse unmuted autoplay: start muted rather than not at all
      if (err.name === "NotAllowedError" && !video.muted) {
        video.muted = true;
        var again = video.play();
        if (again && again.catch) again.catch(function (e) { log("muted play() refused: " + e.name); });
      }
    });
  }

  // Low latency: hls.js aims at the playlist's PART-HOLD-BACK (3 parts, ~0.6 s) and catches up by playing
  // faster when it falls behind (its catch-up is off by default); a stall raises the target by half a second.
  // ?ll=0 is the benchmarks' non-LL baseline and keeps hls.js' defaults.
  var LL_HLS = { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, liveSyncOnStallIncrease: 0.5 };
  // dash.js: 1.5 s behind the live edge of the MPD, held by its playback-rate catch-up
  var DASH_STREAMING = {
    delay: { liveDelay: 1.5 },
    liveCatchup: { enabled: true, maxDrift: 2, playbackRate: { min: -0.2, max: 0.5 } }
  };
  api.latencyConfig = { hls: LL_HLS, dash: DASH_STREAMING };

  function hlsConfig() {
    var config = { lowLatencyMode: false, backBufferLength: 30, liveDurationInfinity: true };
    if (lowLatency) Object.keys(LL_HLS).forEach(function (k) { config[k] = LL_HLS[k]; });
    return config;
  }

  // hls.js starts at a keyframe (an independent part), up to a GOP before its target: jump to the target
  // once at the start, where a jump is not noticed, instead of catching up for seconds
  function joinTarget(hls) {
    var target = hls.liveSyncPosition;
    var end = video.buffered.length ? video.buffered.end(video.buffered.length - 1) : 0;
    if (target != null && hls.latency > hls.targetLatency + 0.5 && end > target) {
      log("joining at the target latency: " + hls.latency.toFixed(2) + " s -> " + hls.targetLatency.toFixed(2) + " s");
      video.currentTime = target;
    }
  }

  function startHls(url, gen) {
    loadScript(cfg.vendor.hls).then(function () {
      if (gen !== generation) return;
      var Hls = window.Hls;
      if (!Hls || !Hls.isSupported()) throw new Error("no MSE");
      var hls = new Hls(hlsConfig());
      api.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, function () { play(); });
      if (lowLatency) video.addEventListener("playing", function () { joinTarget(hls); }, { once: true });
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

  function startWebrtc(info, gen) {
    loadScript("/player/static/whep.js").then(function () {
      if (gen !== generation) return null;
      return window.onairWhep.play(info.whep_url, video, log).then(function (session) {
        if (gen !== generation) { session.stop(); return; }
        api.whep = session;
        play();
      });
    }).catch(function (err) {
      if (gen !== generation) return;
      api.fallback = String(err && err.message || err);
      log("WebRTC failed, LL-HLS instead: " + api.fallback);
      mode = api.mode = "llhls";
      startHls(info.hls_cmaf_url, gen);
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
        streaming: DASH_STREAMING
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
      updateDvr();
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
    updateDvr();
  }

  // --- projections (vr360, vr180, vr360tb): three.js and projection.js, loaded on demand -------------
  var projectionWanted = "regular";

  function setProjection(name) {
    if (name === projectionWanted) return;
    projectionWanted = name;
    if (api.projection && api.projection.destroy) api.projection.destroy();
    api.projection = null;
    root.classList.remove("projected");
    if (PROJECTIONS.indexOf(name) < 0) return;
    Promise.all([import(cfg.vendor.three), import(cfg.projection_module)]).then(function (mods) {
      if (projectionWanted !== name) return;
      try {
        api.projection = mods[1].createProjection(mods[0], video, root, name);
        root.classList.add("projected");
        log("projection " + name);
      } catch (err) {  // no WebGL: the flat (distorted) picture stays visible
        api.projection = { mode: name, renderer: "none", frames: 0, error: String(err && err.message || err) };
        log("projection " + name + " unavailable: " + api.projection.error);
      }
    }).catch(function (err) { log("cannot load the projection: " + (err && err.message || err)); });
  }

  // --- HTML overlays: iframes at source-frame coordinates, scaled onto the displayed picture -----------
  var overlayEls = {};  // overlay id -> {el, url}

  // the frame size overlay coordinates refer to: the pushed source, else the picture, else Full HD
  function sourceSize() {
    var info = api.info || {};
    if (info.source_width && info.source_height) return { w: info.source_width, h: info.source_height };
    if (video.videoWidth && video.videoHeight) return { w: video.videoWidth, h: video.videoHeight };
    return { w: 1920, h: 1080 };
  }

  // where the picture is inside #onair (object-fit: contain), in CSS pixels
  function pictureBox(src) {
    var W = root.clientWidth;
    var H = root.clientHeight;
    var aw = video.videoWidth || src.w;
    var ah = video.videoHeight || src.h;
    var s = Math.min(W / aw, H / ah);
    return { x: (W - aw * s) / 2, y: (H - ah * s) / 2, w: aw * s, h: ah * s };
  }

  function safeUrl(url) {
    try {
      var u = new URL(url, window.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  function layoutOverlays() {
    var info = api.info || {};
    var list = info.html_overlay && Array.isArray(info.overlays) ? info.overlays : [];
    var src = sourceSize();
    var box = pictureBox(src);
    var scale = box.w / src.w;
    var keep = {};
    var fits = true;
    api.overlays = [];
    list.forEach(function (o) {
      var url = safeUrl(o.url);
      if (!url) return;
      var x = o.stretch ? 0 : o.x || 0;
      var y = o.stretch ? 0 : o.y || 0;
      var w = o.stretch ? src.w : o.width || src.w - x;
      var h = o.stretch ? src.h : o.height || src.h - y;
      if (x + w > src.w || y + h > src.h) fits = false;  // one widget off the frame hides them all
      var item = overlayEls[o.id];
      if (!item) {
        var el = document.createElement("iframe");
        el.className = "onair-overlay";
        el.dataset.overlayId = String(o.id);
        el.setAttribute("sandbox", "allow-scripts");  // own origin: no access to the player page
        el.setAttribute("scrolling", "no");
        el.setAttribute("tabindex", "-1");
        el.setAttribute("referrerpolicy", "no-referrer");
        el.title = "overlay " + o.id;
        item = overlayEls[o.id] = { el: el, url: null };
        overlayLayer.appendChild(el);
      }
      if (item.url !== url) { item.url = url; item.el.src = url; }
      var st = item.el.style;
      st.left = box.x + x * scale + "px";
      st.top = box.y + y * scale + "px";
      st.width = w + "px";   // the widget lays out at source pixels, as if drawn into the frame
      st.height = h + "px";
      st.transform = "scale(" + scale + ")";
      keep[o.id] = true;
      api.overlays.push({ id: o.id, url: url, x: box.x + x * scale, y: box.y + y * scale, width: w * scale,
        height: h * scale });
    });
    Object.keys(overlayEls).forEach(function (id) {
      if (!keep[id]) { overlayEls[id].el.remove(); delete overlayEls[id]; }
    });
    overlayLayer.classList.toggle("too-big", !fits);
  }

  function pollInfo() {
    var next = function () {
      setTimeout(pollInfo, api.info && api.info.html_overlay ? INFO_POLL_MS : INFO_IDLE_MS);
    };
    fetchInfo().then(function (info) {
      // the playback state machine owns start/offline; the poll only refreshes what is drawn
      if (info.id === (api.info || {}).id) setInfo(info);
    }).catch(function () { /* next poll */ }).then(next);
  }

  // --- DVR: a seek bar over video.seekable, "-mm:ss" behind the live edge ------------------------------
  var scrubbing = false;

  function liveEdge() {
    if (api.hls && api.hls.liveSyncPosition != null) return api.hls.liveSyncPosition;
    if (video.seekable.length) return Math.max(0, video.seekable.end(video.seekable.length - 1) - 3);
    return null;
  }

  function clock(seconds) {
    var t = Math.max(0, Math.round(seconds));
    var h = Math.floor(t / 3600);
    var m = Math.floor(t / 60) % 60;
    var s = t % 60;
    var mm = (h && m < 10 ? "0" : "") + m;
    return (h ? h + ":" : "") + mm + ":" + (s < 10 ? "0" : "") + s;
  }

  function updateBehindLabel(edge, position) {
    var behind = edge - position;
    behindLabel.textContent = behind < 2 ? "LIVE" : "-" + clock(behind);
  }

  function updateDvr() {
    var edge = liveEdge();
    var on = !!(api.info && api.info.dvr_enabled) && api.state === "playing" && edge !== null &&
      video.seekable.length > 0 && edge - video.seekable.start(0) > 5;
    dvrBar.hidden = !on;
    if (!on) return;
    seekBar.min = String(video.seekable.start(0));
    seekBar.max = String(edge);
    if (!scrubbing) {
      seekBar.value = String(Math.min(video.currentTime, edge));
      updateBehindLabel(edge, video.currentTime);
    }
  }

  seekBar.addEventListener("input", function () {  // dragging: show where it would land
    scrubbing = true;
    var edge = liveEdge();
    if (edge !== null) updateBehindLabel(edge, Number(seekBar.value));
  });
  seekBar.addEventListener("change", function () {  // released: seek there
    scrubbing = false;
    var target = Number(seekBar.value);
    log("seek to " + target.toFixed(1) + " (" + (liveEdge() - target).toFixed(1) + " s behind)");
    video.currentTime = target;
    play();
    updateDvr();
  });

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

  video.muted = skin.mute;
  video.autoplay = skin.autoplay;
  muteButton.textContent = video.muted ? "Unmute" : "Mute";
  video.addEventListener("playing", function () { userStarted = true; setState("playing"); });
  playButton.addEventListener("click", function () { userStarted = true; play(); });
  video.addEventListener("ended", function () { recheck(generation, "ended"); });
  video.addEventListener("timeupdate", updateDvr);
  video.addEventListener("resize", layoutOverlays);  // the picture size is known or changed
  liveButton.addEventListener("click", goLive);
  muteButton.addEventListener("click", function () { video.muted = !video.muted; });
  video.addEventListener("volumechange", function () {
    muteButton.textContent = video.muted ? "Unmute" : "Mute";
  });
  new ResizeObserver(layoutOverlays).observe(root);
  setInfo(cfg.info);
  start();
  setTimeout(pollInfo, cfg.info.html_overlay ? INFO_POLL_MS : INFO_IDLE_MS);
})();
