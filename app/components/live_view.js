// The live view and hold-to-move controls of a live session (a Streamlit v2 component, plain JS, no build step).
// It opens the console's own WebSocket (flywheel/live/stream.py), sends `hello` with the session's stream token,
// draws the cameras' JPEG frames as they come and sends held keys and gamepad sticks as numbered inputs.
// window.__flywheelLive keeps one controller per token (Streamlit may mount the element again on a rerun) and the
// timings the benchmark and tests read: frames drawn [time, t, applied_seq, controller], inputs sent [seq, time,
// type] and acks [seq, t, time].

const ZERO = [0, 0, 0];
const KEYS = {  // key -> [arm, axis, sign]
  d: ["left", 0, 1], a: ["left", 0, -1], w: ["left", 1, 1], s: ["left", 1, -1], e: ["left", 2, 1], q: ["left", 2, -1],
  l: ["right", 0, 1], j: ["right", 0, -1], i: ["right", 1, 1], k: ["right", 1, -1], o: ["right", 2, 1],
  u: ["right", 2, -1],
};
const GRIPPER_KEYS = { z: ["left", true], x: ["left", false], n: ["right", true], m: ["right", false] };
const COMMAND_KEYS = { t: "take_over", h: "hand_back", g: "expert_assist" };
const DEADZONE = 0.15;
const PAD_Z = { 4: ["left", 1], 6: ["left", -1], 5: ["right", 1], 7: ["right", -1] };  // bumpers up, triggers down
const PAD_GRIPPER = { 12: ["left", true], 13: ["left", false], 15: ["right", true], 14: ["right", false] };
const PAD_COMMAND = { 0: "take_over", 1: "hand_back", 3: "expert_assist" };
const PAD_MODE = 9;  // start: realtime <-> step-wait
const KEEP = 600;  // timing entries kept

function registry() {
  if (!window.__flywheelLive) window.__flywheelLive = { controllers: {}, frames: [], sent: [], acks: [], refused: [], gaps: [] };
  return window.__flywheelLive;
}

function push(list, item) {
  list.push(item);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}

function element(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

class LiveController {
  constructor(data) {
    this.data = data;
    this.seq = 0;
    this.keys = new Set();
    this.padButtons = [];
    this.velocity = { left: ZERO, right: ZERO };
    this.header = null;
    this.closed = false;
    this.views = {};
    this.root = element("div", "fw-live");
    this.viewsEl = element("div", "fw-views");
    this.statusEl = element("div", "fw-status", "connecting to the live stream…");
    this.bar = element("div", "fw-bar");
    this.noteEl = element("div", "fw-note");
    this.depthEl = element("div", "fw-depth");
    const help = element("div", "fw-help",
      "Hold keys to move — left arm x± D/A, y± W/S, z± E/Q, gripper open Z / close X · right arm x± L/J, " +
      "y± I/K, z± O/U, gripper N/M · take over T · hand back H · expert assist G. Gamepad: sticks x/y, bumpers " +
      "z+ / triggers z−, d-pad grippers, A take over, B hand back, Y expert assist, Start switches mode.");
    this.buttons = {};
    for (const [name, label] of [["take_over", "Take over"], ["hand_back", "Hand back"],
      ["expert_assist", "Expert assist"]]) {
      const b = element("button", "", label);
      b.dataset.command = name;
      b.onclick = () => this.send({ type: "command", name });
      this.bar.appendChild(b);
      this.buttons[name] = b;
    }
    this.modeButton = element("button", "fw-mode", "mode: …");
    this.modeButton.onclick = () => this.toggleMode();
    this.bar.appendChild(this.modeButton);
    this.root.append(this.viewsEl, this.statusEl, this.depthEl, this.bar, this.noteEl, help);
    this.onKeyDown = (e) => this.key(e, true);
    this.onKeyUp = (e) => this.key(e, false);
    this.onBlur = () => { this.keys.clear(); this.update(); };
    window.addEventListener("keydown", this.onKeyDown, true);
    window.addEventListener("keyup", this.onKeyUp, true);
    window.addEventListener("blur", this.onBlur);
    this.padTimer = setInterval(() => this.pollPad(), 8);
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${this.data.path}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.seq = 0;  // numbering is per connection
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: this.data.token }));
    ws.onmessage = (event) => {
      if (typeof event.data === "string") this.text(JSON.parse(event.data));
      else this.frame(event.data);
    };
    ws.onclose = (event) => {
      this.ws = null;
      if (this.closed) return;
      if (event.code === 4401 || event.code === 4410 || this.over) {
        this.statusEl.textContent = this.over || "the live stream refused this page (sign in again)";
        return;
      }
      setTimeout(() => { if (!this.closed) this.connect(); }, 500);  // a blip: try again
    };
  }

  live() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (!this.live()) return null;
    this.seq += 1;
    const full = { ...message, seq: this.seq };
    push(registry().sent, [this.seq, performance.now(), message.type]);
    this.ws.send(JSON.stringify(full));
    return this.seq;
  }

  text(message) {
    const reg = registry();
    if (message.type === "refused") {
      push(reg.refused, message);
      this.noteEl.textContent = message.error;
    } else if (message.type === "gap") {
      push(reg.gaps, message);
    } else if (message.type === "over") {
      this.over = message.message;
      this.statusEl.textContent = message.message;
    } else if (message.type === "ack") {
      push(reg.acks, [message.seq, message.t, performance.now()]);
      this.noteEl.textContent = "";
    }
  }

  async frame(buffer) {
    const bytes = new Uint8Array(buffer);
    const size = new DataView(buffer).getUint32(4, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
    let at = 8 + size;
    const decoded = [];
    for (const [name, length] of header.cameras) {
      const blob = new Blob([bytes.subarray(at, at + length)], { type: "image/jpeg" });
      at += length;
      decoded.push([name, createImageBitmap(blob)]);
    }
    const images = await Promise.all(decoded.map(([, p]) => p));
    if (this.closed) return;
    if (this.header && header.server_ms < this.header.server_ms) return;  // decoded after a newer one
    const shown = new Set();
    decoded.forEach(([name], i) => {
      shown.add(name);
      this.draw(name, images[i], header);
      images[i].close();
    });
    for (const name of Object.keys(this.views)) {
      if (!shown.has(name)) { this.views[name].box.remove(); delete this.views[name]; }
    }
    this.header = header;
    const reg = registry();
    push(reg.frames, [performance.now(), header.t, header.applied_seq, header.controller]);
    reg.header = header;
    this.status(header);
  }

  view(name) {
    if (!this.views[name]) {
      const box = element("div", "fw-view");
      box.dataset.camera = name;
      const canvas = element("canvas");
      canvas.width = 320;
      canvas.height = 240;
      box.append(canvas, element("div", "fw-label", name));
      this.viewsEl.appendChild(box);
      this.views[name] = { box, canvas, ctx: canvas.getContext("2d") };
    }
    return this.views[name];
  }

  draw(name, image, header) {
    const { ctx, canvas } = this.view(name);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    const overlay = header.overlay || {};
    if (overlay.camera !== name || !overlay.points) return;
    const sx = canvas.width / image.width, sy = canvas.height / image.height;
    for (const arm of ["left", "right"]) {
      const now = overlay.points[`${arm}_now`], want = overlay.points[`${arm}_policy`];
      if (!now || !want) continue;
      ctx.strokeStyle = "#40a9ff";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(now[0] * sx, now[1] * sy);
      ctx.lineTo(want[0] * sx, want[1] * sy);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(want[0] * sx, want[1] * sy, 5, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  status(h) {
    const left = Math.max(0, h.time_left_s).toFixed(1);
    const who = h.operator ? ` · operator ${h.operator}` : "";
    this.statusEl.replaceChildren(
      element("span", "", `Live · step ${h.t} / ${h.max_steps} · controller `),
      element("b", h.controller, h.controller),
      element("span", "", `${who} · stage ${h.stage} / 4 · ${left} s left · ${h.mode === "realtime" ? "real time" :
        "step-wait"}${h.done ? " · episode over" : ""}${h.success ? " · success" : ""}`),
    );
    const o = h.overlay || {};
    if (o.tcp && o.objects && o.objects.length) {
      const arm = o.driven_arm || "right";
      const d = o.tcp[arm].map((c, i) => ((c - o.objects[0][i]) * 100).toFixed(1));
      this.depthEl.textContent = `${arm} gripper − object: Δx ${d[0]} · Δy ${d[1]} · Δz ${d[2]} cm` +
        (o.policy_gripper ? ` · policy's gripper: left ${o.policy_gripper.left}, right ${o.policy_gripper.right}` : "") +
        (o.points ? " · blue: where the policy would move each gripper" : "");
    }
    this.modeButton.textContent = `mode: ${h.mode === "realtime" ? "real time" : "step-wait"}`;
    this.modeButton.classList.toggle("on", h.mode === "realtime");
    const human = h.controller === "human";
    this.buttons.take_over.disabled = human || h.done;
    this.buttons.hand_back.disabled = !h.operator || h.done;
    this.buttons.expert_assist.disabled = h.done;
  }

  toggleMode() {
    const mode = this.header && this.header.mode === "realtime" ? "step_wait" : "realtime";
    this.send({ type: "mode", mode });
  }

  key(e, down) {
    if (!this.live() || e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const k = (e.key || "").toLowerCase();
    if (!(k in KEYS || k in GRIPPER_KEYS || k in COMMAND_KEYS)) return;
    e.preventDefault();
    e.stopImmediatePropagation();  // the page's button shortcuts would jog again
    if (e.repeat) return;
    if (k in KEYS) {
      if (down) this.keys.add(k); else this.keys.delete(k);
      this.update();
    } else if (down && k in GRIPPER_KEYS) {
      const [arm, open] = GRIPPER_KEYS[k];
      this.send({ type: "gripper", arm, open });
    } else if (down) {
      this.send({ type: "command", name: COMMAND_KEYS[k] });
    }
  }

  pad() {
    const pads = navigator.getGamepads ? navigator.getGamepads() : [];
    for (const p of pads || []) if (p && p.connected !== false) return p;
    return null;
  }

  pollPad() {
    if (!this.live()) return;
    const pad = this.pad();
    if (!pad) { if (this.padVelocity) { this.padVelocity = null; this.update(); } return; }
    const axis = (i) => { const v = pad.axes[i] || 0; return Math.abs(v) < DEADZONE ? 0 : v; };
    const pressed = (i) => { const b = pad.buttons[i]; return !!b && (b.pressed || b.value > 0.5); };
    const v = { left: [axis(0), -axis(1), 0], right: [axis(2), -axis(3), 0] };
    for (const [i, [arm, sign]] of Object.entries(PAD_Z)) if (pressed(i)) v[arm][2] += sign;
    const before = this.padButtons;
    const now = pad.buttons.map((_, i) => pressed(i));
    const edge = (i) => now[i] && !before[i];
    for (const [i, [arm, open]] of Object.entries(PAD_GRIPPER)) if (edge(i)) this.send({ type: "gripper", arm, open });
    for (const [i, name] of Object.entries(PAD_COMMAND)) if (edge(i)) this.send({ type: "command", name });
    if (edge(PAD_MODE)) this.toggleMode();
    this.padButtons = now;
    this.padVelocity = v;
    this.update();
  }

  update() {
    const v = { left: [0, 0, 0], right: [0, 0, 0] };
    for (const k of this.keys) { const [arm, axis, sign] = KEYS[k]; v[arm][axis] += sign; }
    if (this.padVelocity) {
      for (const arm of ["left", "right"]) for (let i = 0; i < 3; i++) v[arm][i] += this.padVelocity[arm][i];
    }
    const clamp = (x) => Math.round(Math.max(-1, Math.min(1, x)) * 1000) / 1000;
    for (const arm of ["left", "right"]) v[arm] = v[arm].map(clamp);
    const same = ["left", "right"].every((arm) => v[arm].every((x, i) => x === this.velocity[arm][i]));
    if (same) return;
    this.velocity = v;
    this.send({ type: "drive", left: v.left, right: v.right });
  }

  attach(parent) {
    if (this.root.parentNode !== parent) parent.appendChild(this.root);
  }

  close() {
    this.closed = true;
    clearInterval(this.padTimer);
    window.removeEventListener("keydown", this.onKeyDown, true);
    window.removeEventListener("keyup", this.onKeyUp, true);
    window.removeEventListener("blur", this.onBlur);
    if (this.ws) this.ws.close();
    this.root.remove();
  }
}

export default function (component) {
  const { data, parentElement } = component;
  const reg = registry();
  if (!data || !data.token) return undefined;
  for (const [token, other] of Object.entries(reg.controllers)) {
    if (token !== data.token) { other.close(); delete reg.controllers[token]; }
  }
  let controller = reg.controllers[data.token];
  if (!controller || controller.closed) controller = reg.controllers[data.token] = new LiveController(data);
  clearTimeout(controller.teardown);
  controller.attach(parentElement);
  return () => {
    // Unmounted: close unless the next run mounts the same session again at once.
    controller.teardown = setTimeout(() => {
      if (!controller.root.isConnected) { controller.close(); delete reg.controllers[data.token]; }
    }, 1500);
  };
}
