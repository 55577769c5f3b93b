/* onair player skin: applies a stored player's public display settings (from the page config) to
 * the page. Colours become CSS variables (--onair-bg/-fg/-text/-hover, used by player.css), custom_css is
 * appended as the last <style> (text only, never HTML), the logo is an <img> in a corner, disable_skin
 * hides the controls, speed_control adds a playbackRate menu. window.onairSkin.apply() returns
 * {autoplay, mute} for the player script to honour. */
(function () {
  "use strict";

  var COLOR = /^#[0-9a-fA-F]{6}$/;
  var VARS = { bg_color: "--onair-bg", fg_color: "--onair-fg", text_color: "--onair-text",
    hover_color: "--onair-hover" };
  var POSITIONS = ["tl", "tr", "bl", "br"];
  var SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];

  function safeUrl(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      var u = new URL(url, window.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  function addLogo(s, root) {
    var src = safeUrl(s.logo);
    if (!src) return null;
    var pos = POSITIONS.indexOf(s.logo_position) >= 0 ? s.logo_position : "tl";
    var img = document.createElement("img");
    img.id = "onair-logo";
    img.className = "onair-logo onair-logo-" + pos;
    img.alt = "";
    img.referrerPolicy = "no-referrer";
    img.src = src;
    root.appendChild(img);
    root.classList.add("onair-has-logo-" + pos);
    return img;
  }

  function addSpeedMenu(root, video) {
    var select = document.createElement("select");
    select.id = "onair-speed";
    select.className = "onair-speed";
    select.title = "Playback speed";
    select.setAttribute("aria-label", "Playback speed");
    SPEEDS.forEach(function (rate) {
      var opt = document.createElement("option");
      opt.value = String(rate);
      opt.textContent = rate + "\u00d7";
      if (rate === 1) opt.selected = true;
      select.appendChild(opt);
    });
    select.addEventListener("change", function () { video.playbackRate = Number(select.value) || 1; });
    video.addEventListener("ratechange", function () { select.value = String(video.playbackRate); });
    root.appendChild(select);
    return select;
  }

  // settings: the page config's "player"; root: the player box; video: the <video>, or null (broadcast page)
  function apply(settings, root, video) {
    var s = settings || {};
    var doc = document.documentElement;
    Object.keys(VARS).forEach(function (key) {
      if (COLOR.test(s[key] || "")) doc.style.setProperty(VARS[key], s[key]);
    });
    document.body.classList.toggle("onair-no-skin", !!s.disable_skin);
    if (video) video.controls = !s.disable_skin;
    var out = {
      autoplay: s.autoplay !== false,
      mute: s.mute !== false,
      logo: addLogo(s, root),
      speed: s.speed_control && video && !s.disable_skin ? addSpeedMenu(root, video) : null
    };
    if (typeof s.custom_css === "string" && s.custom_css) {
      var style = document.createElement("style");
      style.id = "onair-custom-css";
      style.textContent = s.custom_css;
      document.head.appendChild(style);
    }
    document.body.dataset.playerId = s.player_id == null ? "" : String(s.player_id);
    return out;
  }

  window.onairSkin = { apply: apply };
})();
