/* onair web player: 360°/180° projections with three.js (loaded only for projected streams).
 * The <video> stays the media element; its frames become a VideoTexture on a sphere seen from inside.
 *   vr360    full equirectangular sphere
 *   vr180    front half sphere (the whole frame covers 180° x 180°)
 *   vr360tb  top-bottom stereo equirectangular: the top (left eye) half, shown mono
 * Look around by dragging (mouse/touch), the arrow keys (+/- zoom) or the mouse wheel. */

// gaze direction for yaw/pitch (degrees): yaw 0 looks at the middle of the frame (u = 0.5)
function direction(THREE, yaw, pitch, out) {
  var lon = Math.PI + THREE.MathUtils.degToRad(yaw);
  var lat = THREE.MathUtils.degToRad(pitch);
  return out.set(Math.cos(lat) * Math.cos(lon), Math.sin(lat), Math.cos(lat) * Math.sin(lon));
}

export function createProjection(THREE, video, container, mode) {
  var renderer = new THREE.WebGLRenderer({ antialias: false, alpha: false });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  var canvas = renderer.domElement;
  canvas.className = "onair-projection";
  canvas.tabIndex = 0;
  canvas.setAttribute("aria-label", "360° video: drag or use the arrow keys to look around");
  container.insertBefore(canvas, video.nextSibling);  // above the video, below overlays and controls

  var scene = new THREE.Scene();
  var camera = new THREE.PerspectiveCamera(75, 16 / 9, 1, 1100);
  var texture = new THREE.VideoTexture(video);
  texture.colorSpace = THREE.SRGBColorSpace;
  texture.minFilter = THREE.LinearFilter;
  texture.generateMipmaps = false;

  var geometry;
  var yawLimit = null;  // vr180: how far the view may turn before leaving the half sphere
  if (mode === "vr180") {
    // phi from 90° to 270° is the front half around yaw 0; the texture's u spans it
    geometry = new THREE.SphereGeometry(500, 48, 32, Math.PI / 2, Math.PI);
    yawLimit = 90;
  } else {
    geometry = new THREE.SphereGeometry(500, 64, 32);
  }
  if (mode === "vr360tb") {  // flipY textures: v 0.5..1 is the top half of the frame
    texture.repeat.set(1, 0.5);
    texture.offset.set(0, 0.5);
  }
  geometry.scale(-1, 1, 1);  // inside-out: the faces point at the camera in the centre
  var mesh = new THREE.Mesh(geometry, new THREE.MeshBasicMaterial({ map: texture }));
  scene.add(mesh);

  var view = { yaw: 0, pitch: 0, fov: 75 };
  var target = new THREE.Vector3();
  var dirty = true;
  var running = true;

  var state = {
    mode: mode,
    renderer: "webgl",
    frames: 0,
    view: view,
    canvas: canvas,
    look: look,
    sample: sample,
    destroy: destroy
  };

  function look(yaw, pitch, fov) {
    if (yaw != null) view.yaw = yawLimit == null ? ((yaw % 360) + 540) % 360 - 180 : Math.max(-yawLimit, Math.min(yawLimit, yaw));
    if (pitch != null) view.pitch = Math.max(-85, Math.min(85, pitch));
    if (fov != null) view.fov = Math.max(30, Math.min(100, fov));
    dirty = true;
  }

  function resize() {
    var w = container.clientWidth || 1;
    var h = container.clientHeight || 1;
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    dirty = true;
  }

  function render() {
    camera.fov = view.fov;
    camera.updateProjectionMatrix();
    camera.lookAt(direction(THREE, view.yaw, view.pitch, target));
    renderer.render(scene, camera);
    state.frames += 1;
    dirty = false;
  }

  // renders and reads a grid of pixels at once (the drawing buffer is not preserved after compositing):
  // {distinct, mean} tells a picture from a blank canvas
  function sample(n) {
    n = n || 8;
    render();
    var gl = renderer.getContext();
    var w = gl.drawingBufferWidth;
    var h = gl.drawingBufferHeight;
    var px = new Uint8Array(4);
    var seen = {};
    var distinct = 0;
    var sum = 0;
    for (var i = 0; i < n; i++) {
      for (var j = 0; j < n; j++) {
        gl.readPixels(Math.floor((i + 0.5) * w / n), Math.floor((j + 0.5) * h / n), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
        var key = (px[0] >> 3) + "," + (px[1] >> 3) + "," + (px[2] >> 3);
        if (!seen[key]) { seen[key] = true; distinct += 1; }
        sum += px[0] + px[1] + px[2];
      }
    }
    return { distinct: distinct, mean: sum / (3 * n * n), width: w, height: h };
  }

  // a new picture only when the video has a new frame or the view changed
  if (typeof video.requestVideoFrameCallback === "function") {
    var onFrame = function () { dirty = true; if (running) video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
  }
  function loop() {
    if (!running) return;
    if ((dirty || typeof video.requestVideoFrameCallback !== "function") && video.readyState >= 2) render();
    requestAnimationFrame(loop);
  }

  // drag to look around: the picture follows the pointer
  var drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, yaw: view.yaw, pitch: view.pitch };
    canvas.setPointerCapture(e.pointerId);
    canvas.focus();
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) return;
    var perPx = view.fov / (container.clientHeight || 1);
    look(drag.yaw - (e.clientX - drag.x) * perPx, drag.pitch + (e.clientY - drag.y) * perPx);
  });
  var endDrag = function () { drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", function (e) { e.preventDefault(); look(null, null, view.fov + e.deltaY * 0.05); },
    { passive: false });
  canvas.addEventListener("keydown", function (e) {
    var step = 5;
    var keys = {
      ArrowLeft: function () { look(view.yaw - step); },
      ArrowRight: function () { look(view.yaw + step); },
      ArrowUp: function () { look(null, view.pitch + step); },
      ArrowDown: function () { look(null, view.pitch - step); },
      "+": function () { look(null, null, view.fov - step); },
      "-": function () { look(null, null, view.fov + step); }
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });

  var observer = new ResizeObserver(resize);
  observer.observe(container);
  resize();
  requestAnimationFrame(loop);

  function destroy() {
    running = false;
    observer.disconnect();
    texture.dispose();
    geometry.dispose();
    mesh.material.dispose();
    renderer.dispose();
    canvas.remove();
  }

  return state;
}
