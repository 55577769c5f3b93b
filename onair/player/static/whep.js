/* onair web player: WebRTC playback over WHEP (?protocol=webrtc). window.onairWhep.play(url, video, log)
 * resolves with a session {pc, location, stop()} once the answer is applied and rejects when WebRTC is
 * unavailable, the server refuses or no media arrives in time (the player then falls back to LL-HLS). */
(function () {
  "use strict";

  var MEDIA_TIMEOUT_MS = 8000;  // the first keyframe comes within a GOP (2 s) plus ICE and DTLS set-up

  function gathered(pc) {  // the server takes no trickle ICE: send the offer with every candidate
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, 2000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function play(url, video, log) {
    if (!window.RTCPeerConnection) return Promise.reject(new Error("no WebRTC in this browser"));
    var pc = new RTCPeerConnection({ iceServers: [] });
    var stream = new MediaStream();
    var session = { pc: pc, location: null, stop: stop };
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = function (ev) {
      stream.addTrack(ev.track);
      if (video.srcObject !== stream) video.srcObject = stream;
    };

    function stop() {
      window.removeEventListener("pagehide", stop);
      // keepalive: the DELETE still goes out when the page is being left
      if (session.location) fetch(session.location, { method: "DELETE", keepalive: true }).catch(function () {});
      session.location = null;
      pc.close();
      if (video.srcObject === stream) video.srcObject = null;
    }
    window.addEventListener("pagehide", stop);

    var media = new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Error("no WebRTC media within " + MEDIA_TIMEOUT_MS + " ms")); },
                             MEDIA_TIMEOUT_MS);
      video.addEventListener("loadeddata", function () { clearTimeout(timer); resolve(); }, { once: true });
      pc.addEventListener("connectionstatechange", function () {
        if (pc.connectionState === "failed") { clearTimeout(timer); reject(new Error("WebRTC connection failed")); }
      });
    });

    return pc.createOffer()
      .then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return gathered(pc); })
      .then(function () {
        return fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" },
                            body: pc.localDescription.sdp });
      })
      .then(function (r) {
        if (r.status !== 201) {
          return r.text().then(function (t) { throw new Error("WHEP " + r.status + " " + t.slice(0, 200)); });
        }
        session.location = new URL(r.headers.get("Location"), url).href;
        return r.text();
      })
      .then(function (answer) { return pc.setRemoteDescription({ type: "answer", sdp: answer }); })
      .then(function () { log("whep: answer applied"); return media; })
      .then(function () { return session; })
      .catch(function (err) { stop(); throw err; });
  }

  window.onairWhep = { play: play };
})();
