// The episode player of the Episodes and Review pages (a Streamlit v2 component, plain JS, no build step).
// It fetches the episode's cached video file from the console (flywheel/live/video_route.py, behind the console's
// sign-in) once, and plays it client-side at the control rate: cameras side by side, a scrubber, the controller
// timeline with each takeover's start and end marked (click a mark or its button to jump there), and the state and
// action plots with a cursor, all moved together. The video file is FWV1, a uint32 header length, a JSON header
// ({frames, size, cameras: [[name, [bytes per frame]]]}) and the JPEGs (flywheel/live/episode_video.py).
// window.__flywheelPlayer.players[id] is the player of the mount `id` (tests read `t`, `playing` and `drawn`:
// [time, step] of each frame drawn).

const SPEEDS = [0.25, 0.5, 1, 2];
const PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
  "#bab0ac"];
const PREFETCH = 8;  // frames decoded ahead while playing
const KEPT_BITMAPS = 96;  // per camera
const KEEP = 600;  // timing entries kept

function registry() {
  if (!window.__flywheelPlayer) window.__flywheelPlayer = { players: {} };
  return window.__flywheelPlayer;
}

function element(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function parseVideo(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== "FWV1") throw new Error("not an episode video file");
  const size = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
  const blob = new Blob([buffer]);
  let at = 8 + size;
  const cameras = header.cameras.map(([name, lengths]) => {
    const frames = lengths.map((length) => {
      const part = blob.slice(at, at + length, "image/jpeg");
      at += length;
      return part;
    });
    return { name, frames, bitmaps: new Map() };
  });
  return { frames: header.frames, size: header.size, cameras };
}

class Player {
  constructor(data) {
    this.data = data;
    this.t = 0;
    this.playing = false;
    this.speed = 1;
    this.video = null;
    this.drawn = [];
    this.drawnT = -1;
    this.requested = 0;
    this.painted = 0;
    this.root = element("div", "fw-player");
    this.root.tabIndex = 0;
    this.viewsEl = element("div", "fw-views");
    this.noteEl = element("div", "fw-note", data.video ? "loading the episode's video…" : "");
    const bar = element("div", "fw-bar");
    this.playButton = element("button", "fw-play", "▶ Play");
    this.playButton.dataset.action = "play";
    this.playButton.onclick = () => this.toggle();
    const back = element("button", "", "◀ step");
    back.dataset.action = "back";
    back.onclick = () => { this.pause(); this.seek(this.t - 1); };
    const forward = element("button", "", "step ▶");
    forward.dataset.action = "forward";
    forward.onclick = () => { this.pause(); this.seek(this.t + 1); };
    this.speedEl = element("select", "fw-speed");
    for (const s of SPEEDS) {
      const option = element("option", "", `${s}×`);
      option.value = String(s);
      if (s === 1) option.selected = true;
      this.speedEl.appendChild(option);
    }
    this.speedEl.onchange = () => this.setSpeed(Number(this.speedEl.value));
    this.scrubber = element("input", "fw-scrubber");
    this.scrubber.type = "range";
    this.scrubber.min = "0";
    this.scrubber.step = "1";
    this.scrubber.oninput = () => { this.pause(); this.seek(Number(this.scrubber.value)); };
    this.readout = element("span", "fw-readout");
    bar.append(this.playButton, back, forward, this.speedEl, this.scrubber);
    this.timeline = element("div", "fw-timeline");
    this.timeline.onclick = (e) => {
      if (e.target.closest(".fw-mark")) return;
      const box = this.timeline.getBoundingClientRect();
      this.pause();
      this.seek(Math.floor(((e.clientX - box.left) / box.width) * this.length()));
    };
    this.jumpsEl = element("div", "fw-jumps");
    this.plotsEl = element("div", "fw-plots");
    this.root.append(this.viewsEl, this.noteEl, bar, this.readout, this.timeline, this.jumpsEl, this.plotsEl);
    this.root.addEventListener("keydown", (e) => this.key(e));
    this.update(data);
    this.load();
  }

  length() {
    return this.data.length;
  }

  update(data) {
    this.data = data;
    this.scrubber.max = String(Math.max(0, data.length - 1));
    this.buildTimeline();
    this.buildPlots();
    this.seek(this.t);
  }

  async load() {
    if (!this.data.video) return;
    try {
      const reply = await fetch(this.data.video, { credentials: "same-origin" });
      if (!reply.ok) throw new Error(`the console answered ${reply.status} ${await reply.text()}`);
      this.video = parseVideo(await reply.arrayBuffer());
    } catch (error) {
      this.noteEl.textContent = `Cannot load the episode's video: ${error.message}`;
      return;
    }
    if (this.closed) return;
    this.noteEl.textContent = "";
    const [height, width] = this.video.size;
    for (const camera of this.video.cameras) {
      const box = element("div", "fw-view");
      box.dataset.camera = camera.name;
      const canvas = element("canvas");
      canvas.width = width;
      canvas.height = height;
      box.append(canvas, element("div", "fw-label", camera.name));
      this.viewsEl.appendChild(box);
      camera.canvas = canvas;
      camera.ctx = canvas.getContext("2d");
    }
    this.root.dataset.ready = "true";
    this.paint(this.t);
  }

  // -- playback ---------------------------------------------------------------------------------------------------
  toggle() {
    if (this.playing) this.pause(); else this.play();
  }

  play() {
    if (this.playing) return;
    if (this.t >= this.length() - 1) this.seek(0);
    this.playing = true;
    this.anchor = [performance.now(), this.t];
    this.playButton.textContent = "❚❚ Pause";
    this.root.dataset.playing = "true";
    const tick = () => {
      if (!this.playing || this.closed) return;
      const [since, from] = this.anchor;
      const t = from + Math.floor(((performance.now() - since) / 1000) * this.data.fps * this.speed);
      if (t >= this.length() - 1) {
        this.seek(this.length() - 1);
        this.pause();
        return;
      }
      if (t !== this.t) this.seek(t);
      this.frameRequest = requestAnimationFrame(tick);
    };
    this.frameRequest = requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this.frameRequest);
    this.playButton.textContent = "▶ Play";
    this.root.dataset.playing = "false";
  }

  setSpeed(speed) {
    this.speed = speed;
    if (this.playing) this.anchor = [performance.now(), this.t];
  }

  seek(t) {
    t = Math.max(0, Math.min(this.length() - 1, Math.round(t)));
    this.t = t;
    this.root.dataset.step = String(t);
    this.scrubber.value = String(t);
    const segment = this.data.segments.find((s) => s.start <= t && t < s.end);
    const who = segment ? segment.controller + (segment.operator ? ` (${segment.operator})` : "") : "?";
    const reward = this.data.reward[t];
    this.readout.textContent = `step ${t} / ${this.length() - 1} · ${(t / this.data.fps).toFixed(2)} s · ` +
      `controller ${who} · reward ${reward === undefined ? "—" : reward}`;
    this.cursor.style.left = `${this.along(t) * 100}%`;
    for (const plot of this.plots) this.drawPlot(plot, t);
    this.paint(t);
  }

  key(e) {
    if (e.target !== this.root && ["BUTTON", "SELECT", "INPUT"].includes(e.target.tagName)) return;  // their own keys
    if (e.key === " ") this.toggle();
    else if (e.key === "ArrowLeft") { this.pause(); this.seek(this.t - 1); }
    else if (e.key === "ArrowRight") { this.pause(); this.seek(this.t + 1); }
    else return;
    e.preventDefault();
    e.stopPropagation();
  }

  // -- pictures ---------------------------------------------------------------------------------------------------
  bitmap(camera, t) {
    let promise = camera.bitmaps.get(t);
    if (!promise) {
      promise = createImageBitmap(camera.frames[t]);
      camera.bitmaps.set(t, promise);
      if (camera.bitmaps.size > KEPT_BITMAPS) {
        const [oldest, old] = camera.bitmaps.entries().next().value;
        camera.bitmaps.delete(oldest);
        old.then((b) => b.close(), () => {});
      }
    }
    return promise;
  }

  async paint(t) {
    if (!this.video) return;
    const request = ++this.requested;
    const cameras = this.video.cameras;
    let images;
    try {
      images = await Promise.all(cameras.map((c) => this.bitmap(c, t)));
    } catch (error) {
      this.noteEl.textContent = `Cannot decode frame ${t}: ${error.message}`;
      return;
    }
    if (this.closed || request < this.painted) return;  // a newer frame is already on screen
    this.painted = request;
    cameras.forEach((camera, i) => {
      // a bitmap evicted (closed) meanwhile has width 0: decode it again next time
      if (images[i].width === 0) { camera.bitmaps.delete(t); return; }
      camera.ctx.drawImage(images[i], 0, 0, camera.canvas.width, camera.canvas.height);
    });
    this.drawnT = t;
    this.root.dataset.drawn = String(t);
    this.drawn.push([performance.now(), t]);
    if (this.drawn.length > KEEP) this.drawn.splice(0, this.drawn.length - KEEP);
    if (this.playing) {
      for (let k = 1; k <= PREFETCH && t + k < this.length(); k++) for (const c of cameras) this.bitmap(c, t + k);
    }
  }

  // -- timeline ---------------------------------------------------------------------------------------------------
  fraction(t) {  // plots: first to last step
    return this.length() > 1 ? t / (this.length() - 1) : 0;
  }

  along(t) {  // timeline: the middle of step t, each step 1/length wide (segments are [start, end) steps)
    return (t + 0.5) / Math.max(1, this.length());
  }

  buildTimeline() {
    const colors = this.data.colors || {};
    this.timeline.replaceChildren();
    for (const s of this.data.segments) {
      const bar = element("div", "fw-segment");
      bar.style.left = `${(s.start / this.length()) * 100}%`;
      bar.style.width = `${((s.end - s.start) / this.length()) * 100}%`;
      bar.style.background = colors[s.controller] || "#999";
      bar.title = `${s.controller}${s.operator ? " by " + s.operator : ""}: steps ${s.start}–${s.end}` +
        (s.trigger ? ` (${s.trigger})` : "");
      this.timeline.appendChild(bar);
    }
    this.jumpsEl.replaceChildren();
    this.data.marks.forEach((mark, i) => {
      const flag = element("div", `fw-mark fw-mark-${mark.kind}`);
      flag.style.left = `${this.along(mark.step) * 100}%`;
      flag.title = mark.label;
      flag.onclick = () => { this.pause(); this.seek(mark.step); };
      this.timeline.appendChild(flag);
      const jump = element("button", `fw-jump fw-jump-${mark.kind}`, `→ ${mark.label}`);
      jump.dataset.jump = String(i);
      jump.dataset.step = String(mark.step);
      jump.onclick = () => { this.pause(); this.seek(mark.step); };
      this.jumpsEl.appendChild(jump);
    });
    this.cursor = element("div", "fw-cursor");
    this.timeline.appendChild(this.cursor);
    const legend = element("div", "fw-legend");
    for (const [name, color] of Object.entries(colors)) {
      const item = element("span", "", name);
      item.style.borderLeft = `10px solid ${color}`;
      legend.appendChild(item);
    }
    this.timeline.appendChild(legend);
  }

  // -- plots ------------------------------------------------------------------------------------------------------
  buildPlots() {
    this.plotsEl.replaceChildren();
    this.plots = this.data.plots.filter((p) => p.series.length).map((spec) => {
      const box = element("div", "fw-plot");
      const title = element("div", "fw-plot-title", spec.title);
      const canvas = element("canvas");
      canvas.width = 560;
      canvas.height = 170;
      const legend = element("div", "fw-plot-legend");
      const values = spec.series.map((s, i) => {
        const item = element("span", "");
        item.style.color = PALETTE[i % PALETTE.length];
        legend.appendChild(item);
        return item;
      });
      box.append(title, canvas, legend);
      this.plotsEl.appendChild(box);
      const plot = { spec, canvas, ctx: canvas.getContext("2d"), values };
      plot.background = this.plotBackground(plot);
      return plot;
    });
  }

  plotBackground(plot) {
    const { spec, canvas } = plot;
    const off = document.createElement("canvas");
    off.width = canvas.width;
    off.height = canvas.height;
    const ctx = off.getContext("2d");
    let lo = Infinity, hi = -Infinity;
    for (const s of spec.series) for (const v of s.values) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const dpr = window.devicePixelRatio || 1, pad = 6 * dpr, w = off.width, h = off.height;
    const x = (t) => pad + this.fraction(t) * (w - 2 * pad);
    const y = (v) => h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "#ddd";
    ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
    spec.series.forEach((s, i) => {
      ctx.strokeStyle = PALETTE[i % PALETTE.length];
      ctx.setLineDash(s.dashed ? [4 * dpr, 3 * dpr] : []);
      ctx.lineWidth = 1.5 * dpr;
      ctx.beginPath();
      let pen = false;
      s.values.forEach((v, t) => {
        if (v === null) { pen = false; return; }
        if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
        pen = true;
      });
      ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.fillStyle = "#666";
    ctx.font = `${Math.round(10 * dpr)}px sans-serif`;
    ctx.fillText(hi.toFixed(3), pad + 2, pad + 9 * dpr);
    ctx.fillText(lo.toFixed(3), pad + 2, h - pad - 2);
    plot.x = x;
    return off;
  }

  drawPlot(plot, t) {
    const { ctx, canvas } = plot;
    const wanted = Math.round(canvas.clientWidth * (window.devicePixelRatio || 1));
    if (wanted > 0 && Math.abs(wanted - canvas.width) > 2) {  // laid out at another width: draw it sharp
      canvas.width = wanted;
      canvas.height = Math.round(canvas.clientHeight * (window.devicePixelRatio || 1));
      plot.background = this.plotBackground(plot);
    }
    ctx.drawImage(plot.background, 0, 0);
    ctx.strokeStyle = "#222";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(plot.x(t) + 0.5, 0);
    ctx.lineTo(plot.x(t) + 0.5, canvas.height);
    ctx.stroke();
    plot.spec.series.forEach((s, i) => {
      const v = s.values[t];
      plot.values[i].textContent = `${s.name} ${v === null || v === undefined ? "—" : v.toFixed(3)}`;
    });
  }

  attach(parent) {
    if (this.root.parentNode !== parent) parent.appendChild(this.root);
  }

  close() {
    this.closed = true;
    this.pause();
    if (this.video) for (const c of this.video.cameras) for (const p of c.bitmaps.values()) p.then((b) => b.close(), () => {});
    this.root.remove();
  }
}

export default function (component) {
  const { data, parentElement } = component;
  if (!data || !data.id) return undefined;
  const players = registry().players;
  let player = players[data.id];
  if (player && (player.closed || player.data.video !== data.video || player.data.episode !== data.episode)) {
    player.close();
    player = null;
  }
  if (!player) player = players[data.id] = new Player(data);
  else player.update(data);  // same episode (e.g. other plot series chosen): keep the position
  clearTimeout(player.teardown);
  player.attach(parentElement);
  return () => {
    // Unmounted: close unless the next run mounts the same player again at once.
    player.teardown = setTimeout(() => {
      if (!player.root.isConnected) { player.close(); if (players[data.id] === player) delete players[data.id]; }
    }, 1500);
  };
}
