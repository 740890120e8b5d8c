// netboot's web view. Plain JavaScript, no build step. Every piece of data
// comes from the JSON API with the signed-in token, and reaches the page
// as text (textContent, attribute values), never as markup.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "netboot.token";
const KEEP_EVENTS = 50; // per node, for the grid's state and a node page's live rows

// The states a node's cell shows, in the legend's order: a class, a label,
// and a short mark, so the state is readable without its colour.
const STATES = [
  ["off", "off", "·"],
  ["power", "power on", "P"],
  ["dhcp", "DHCP", "D"],
  ["bootfiles", "loading boot files", "B"],
  ["kernel", "kernel", "K"],
  ["enrolled", "enrolled", "E"],
  ["imaging", "imaging", "%"],
  ["local", "booting local disk", "L"],
  ["failed", "failed", "!"],
  ["unknown", "no events", ""],
];
const STATE_LABEL = Object.fromEntries(STATES.map(([k, l]) => [k, l]));
const STATE_MARK = Object.fromEntries(STATES.map(([k, , m]) => [k, m]));
// Boot files that are kernels, by base name (as netbootd's metrics say).
const KERNELS = ["linux", "vmlinuz", "vmlinux", "bzimage", "kernel"];
const NO_LINK_FILE = "no-boot-link.efi";

const app = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  who: null,
  nodes: new Map(), // hrn -> node
  events: new Map(), // hrn -> recent events, oldest first
  state: new Map(), // hrn -> {state, at}
  commands: new Map(), // hrn -> the node's active LOAD_IMAGE/SAVE_IMAGE command
  cells: new Map(), // hrn -> the grid cell on screen
  stream: null, // AbortController of the event stream
  poll: 0,
  onEvent: null, // the current page's hook for live events
};

// ---- DOM helpers -------------------------------------------------------

// el makes an element: attrs are attributes (or, for on*, listeners);
// children are nodes or strings, strings becoming text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function $(id) { return document.getElementById(id); }

function showError(msg) { $("error").textContent = msg || ""; }

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

function fmtDur(ms) {
  if (!(ms >= 0)) return "";
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.round(s - 60 * m) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function fmtBytes(n) {
  if (!(n > 0)) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function table(caption, headers, rows) {
  return el("table", {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

// ---- the API -----------------------------------------------------------

class APIError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + app.token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, opts);
  if (r.status === 401) {
    signOut("The token was refused: sign in again.");
    throw new APIError(401, "signed out");
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!r.ok) {
    const msg = data && data.error ? data.error : r.status + " " + r.statusText;
    throw new APIError(r.status, msg);
  }
  return data;
}

function may(role) {
  const rank = { viewer: 1, operator: 2, admin: 3 };
  return app.who && (rank[app.who.role] || 0) >= rank[role];
}

// ---- node states -------------------------------------------------------

function baseName(f) {
  const i = f.lastIndexOf("/");
  return (i >= 0 ? f.slice(i + 1) : f).toLowerCase();
}

// classify is the state a node is in after event e, given the state it
// was in before.
function classify(e, prev) {
  const what = e.what || "";
  const detail = e.detail || "";
  switch (e.source) {
    case "power":
      if (detail.startsWith("failed")) return "failed";
      if (what === "on" || what === "reset" || what === "reboot") return "power";
      if (what.startsWith("off")) return "off";
      return prev;
    case "dhcp":
      // Firmware and iPXE say their architecture (option 93: arch= in
      // the detail); the booted kernel's init and the node's running
      // system do not, and their leases are not a new boot.
      if (!/\barch=/.test(detail) && ["kernel", "enrolled", "imaging", "local"].includes(prev)) return prev;
      return "dhcp";
    case "tftp":
    case "http": {
      if (detail.startsWith("failed")) return "failed";
      if (baseName(what) === NO_LINK_FILE) return "local";
      if (KERNELS.some((k) => baseName(what).startsWith(k))) return "kernel";
      return prev === "kernel" ? "kernel" : "bootfiles";
    }
    case "rc":
      if (what === "enrolled") return "enrolled";
      if (what === "image multicast") return "imaging";
      if (/ (failed|refused)$/.test(what)) return "failed";
      if (what === "image load done" || what.startsWith("image save")) return "enrolled";
      if (what === "reboot done") return "power";
      if (what === "poweroff done") return "off";
      return prev;
  }
  return prev;
}

// addEvent puts e on its node's list in time order, and derives the
// node's state again from the list. Events need not come in time order:
// the DHCP server commits its events in batches, after a TFTP transfer
// that followed them may have been committed. It returns false for an
// event the list holds already (one both in the snapshot and live).
function addEvent(e) {
  let list = app.events.get(e.hrn);
  if (!list) { list = []; app.events.set(e.hrn, list); }
  const t = Date.parse(e.at);
  let i = list.length;
  while (i > 0 && Date.parse(list[i - 1].at) > t) i--;
  for (let j = i - 1; j >= 0 && list[j].at === e.at; j--) {
    if (list[j].what === e.what && list[j].source === e.source && list[j].detail === e.detail) return false;
  }
  list.splice(i, 0, e);
  if (list.length > KEEP_EVENTS) list.splice(0, list.length - KEEP_EVENTS);
  let state = "unknown";
  for (const x of list) state = classify(x, state);
  const last = list[list.length - 1];
  app.state.set(e.hrn, { state, at: last.at, last });
  return true;
}

// stateOf is what a node's cell shows: a running load first, else what its
// events say.
function stateOf(hrn) {
  const cmd = app.commands.get(hrn);
  if (cmd && cmd.type === "LOAD_IMAGE" && cmd.state === "running") {
    const p = cmd.progress || {};
    const pct = p.total > 0 ? Math.min(100, Math.floor((100 * p.done) / p.total)) : null;
    return { state: "imaging", pct };
  }
  const s = app.state.get(hrn);
  return { state: s ? s.state : "unknown", pct: null, at: s && s.at };
}

// ---- the event stream --------------------------------------------------

// follow reads GET /events/stream with fetch(), which, unlike EventSource,
// sends the Authorization header: the token stays out of URLs and logs.
async function follow() {
  if (app.stream) app.stream.abort();
  const ctl = new AbortController();
  app.stream = ctl;
  let wait = 1000;
  while (!ctl.signal.aborted) {
    try {
      setLive("connecting…");
      const r = await fetch(API + "/events/stream?recent=" + KEEP_EVENTS, {
        headers: { Authorization: "Bearer " + app.token, Accept: "text/event-stream" },
        signal: ctl.signal,
      });
      if (r.status === 401) { signOut("The token was refused: sign in again."); return; }
      if (!r.ok) throw new Error("event stream: " + r.status);
      wait = 1000;
      await readSSE(r.body, onSSE);
    } catch (err) {
      if (ctl.signal.aborted) return;
      console.warn(err);
    }
    if (ctl.signal.aborted) return;
    setLive("reconnecting…");
    await new Promise((res) => setTimeout(res, wait));
    wait = Math.min(wait * 2, 15000);
  }
}

// readSSE parses a text/event-stream body, calling fn(name, data) per
// event.
async function readSSE(body, fn) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) fn(name, data.join("\n"));
    }
  }
}

function onSSE(name, data) {
  switch (name) {
    case "snapshot": {
      app.events.clear();
      app.state.clear();
      for (const e of JSON.parse(data)) addEvent(e);
      setLive("live");
      refreshCells();
      if (app.onEvent) app.onEvent(null);
      break;
    }
    case "event": {
      const e = JSON.parse(data);
      if (addEvent(e)) {
        refreshCell(e.hrn);
        if (app.onEvent) app.onEvent(e);
      }
      break;
    }
    case "reload":
      // We fell behind and events were dropped: the stream ends, and the
      // next one starts from a fresh snapshot.
      setLive("resynchronising…");
      break;
  }
}

function setLive(s) { $("live").textContent = s; }

// pollCommands keeps the active commands (the loads' progress) current:
// progress reports are not timeline events.
async function pollCommands() {
  clearTimeout(app.poll);
  if (!app.token) return;
  try {
    const cmds = await api("GET", "/commands");
    const before = new Set(app.commands.keys());
    app.commands.clear();
    for (const c of cmds) {
      if (c.type === "LOAD_IMAGE" || c.type === "SAVE_IMAGE") app.commands.set(c.hrn, c);
    }
    for (const h of new Set([...before, ...app.commands.keys()])) refreshCell(h);
    if (app.onCommands) app.onCommands();
  } catch (err) {
    if (err.status === 401) return;
  }
  app.poll = setTimeout(pollCommands, app.commands.size ? 2000 : 5000);
}

// ---- sign-in -----------------------------------------------------------

async function signIn(token) {
  app.token = token;
  try {
    app.who = await api("GET", "/whoami");
  } catch (err) {
    app.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(err.status === 401 ? "The token was refused." : "Sign-in failed: " + err.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showError("");
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = app.who.name + " (" + app.who.role + ")";
  try {
    const nodes = await api("GET", "/nodes");
    app.nodes = new Map(nodes.map((n) => [n.hrn, n]));
  } catch (err) {
    if (err.status !== 401) showError("Reading the inventory failed: " + err.message);
    return;
  }
  follow();
  pollCommands();
  route();
}

function signOut(msg) {
  if (app.stream) app.stream.abort();
  app.stream = null;
  clearTimeout(app.poll);
  app.token = "";
  app.who = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(msg);
}

function showSignIn(msg) {
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  setLive("");
  $("view").replaceChildren();
  $("signin").hidden = false;
  // https, and http from this very host (loopback), are secure contexts;
  // anything else carries the token in clear.
  $("cleartext").hidden = window.isSecureContext;
  showError(msg || "");
  $("token").value = "";
  $("token").focus();
}

// ---- pages -------------------------------------------------------------

function route() {
  if (!app.who) return;
  app.onEvent = null;
  app.onCommands = null;
  app.cells.clear();
  showError("");
  const h = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  // Each page fills a container of its own: one left for another while
  // it waited on the API fills a container no longer shown.
  const view = el("div");
  $("view").replaceChildren(view);
  let page;
  if (h.startsWith("node/")) page = nodePage(view, h.slice(5));
  else if (h === "links") page = linksPage(view);
  else if (h === "images") page = imagesPage(view);
  else if (h === "loads") page = loadsPage(view);
  else page = gridPage(view);
  Promise.resolve(page).catch((err) => showError(err.message));
  // The link that was followed may be gone: keyboard focus goes to the
  // new page, where Tab goes on.
  $("view").focus({ preventScroll: true });
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.getAttribute("href") === "#/" + (h.startsWith("node/") ? "" : h)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// layout places a testbed's nodes: at their inventory x,y when every node
// has distinct coordinates from 1, else in order, row by row.
function layout(nodes) {
  const seen = new Set();
  const placed = nodes.every((n) => {
    const k = n.x + "," + n.y;
    if (n.x < 1 || n.y < 1 || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (placed) return nodes.map((n) => ({ n, x: n.x, y: n.y }));
  const cols = Math.max(1, Math.ceil(Math.sqrt(nodes.length)));
  return nodes.map((n, i) => ({ n, x: (i % cols) + 1, y: Math.floor(i / cols) + 1 }));
}

async function gridPage(view) {
  // The inventory may have changed since the last look.
  const nodes = await api("GET", "/nodes");
  app.nodes = new Map(nodes.map((n) => [n.hrn, n]));
  if (!view.isConnected) return;
  view.append(el("h2", { class: "visually-hidden" }, "Grid"));
  const legend = el("ul", { class: "legend", "aria-label": "States" });
  for (const [k, label, mark] of STATES) {
    legend.append(el("li", {}, el("span", { class: "swatch s-" + k, "aria-hidden": "true" }, mark), " " + label, el("span", { class: "count", "data-count": k })));
  }
  view.append(legend);
  const byDomain = new Map();
  for (const n of [...app.nodes.values()].sort((a, b) => a.hrn.localeCompare(b.hrn, undefined, { numeric: true }))) {
    if (!byDomain.has(n.domain)) byDomain.set(n.domain, []);
    byDomain.get(n.domain).push(n);
  }
  if (!byDomain.size) view.append(el("p", {}, "The inventory holds no nodes."));
  for (const [domain, nodes] of byDomain) {
    const cells = layout(nodes);
    const cols = Math.max(...cells.map((c) => c.x));
    const grid = el("div", { class: "grid", role: "group", "aria-label": "Nodes of " + domain + " (arrow keys move between nodes)" });
    grid.style.gridTemplateColumns = "repeat(" + cols + ", var(--cell-w))";
    const at = new Map(); // "x,y" -> cell
    grid.addEventListener("keydown", (ev) => {
      const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[ev.key];
      const from = ev.target.closest(".cell");
      if (!step || !from) return;
      const next = at.get((Number(from.style.gridColumn) + step[0]) + "," + (Number(from.style.gridRow) + step[1]));
      if (next) { next.focus(); ev.preventDefault(); }
    });
    for (const { n, x, y } of cells) {
      const a = el("a", { class: "cell", href: "#/node/" + encodeURIComponent(n.hrn), "data-hrn": n.hrn, title: n.hrn },
        el("span", { class: "name" }, shortName(n)), el("span", { class: "mark" }));
      a.style.gridColumn = String(x);
      a.style.gridRow = String(y);
      grid.append(a);
      at.set(x + "," + y, a);
      app.cells.set(n.hrn, a);
    }
    view.append(el("section", { class: "testbed" }, el("h3", {}, domain + " (" + nodes.length + " nodes)"), grid));
  }
  refreshCells();
}

// shortName is what fits a cell: node1-2 shows 1-2.
function shortName(n) {
  const m = /^node(.+)$/.exec(n.hostname || "");
  return m ? m[1] : n.hostname || n.hrn;
}

function refreshCells() {
  for (const h of app.cells.keys()) refreshCell(h);
  countStates();
}

// countStates fills the legend's counts.
function countStates() {
  const counts = {};
  for (const h of app.nodes.keys()) {
    const s = stateOf(h).state;
    counts[s] = (counts[s] || 0) + 1;
  }
  for (const c of document.querySelectorAll("[data-count]")) {
    c.textContent = " " + (counts[c.dataset.count] || 0);
  }
}

function refreshCell(hrn) {
  const a = app.cells.get(hrn);
  if (!a) return;
  const { state, pct } = stateOf(hrn);
  a.className = "cell s-" + state;
  a.dataset.state = state;
  const mark = state === "imaging" && pct !== null ? pct + "%" : STATE_MARK[state];
  a.querySelector(".mark").textContent = mark;
  a.setAttribute("aria-label", hrn + ": " + STATE_LABEL[state] + (pct !== null && state === "imaging" ? " " + pct + "%" : ""));
  // A burst of events recounts once, before the next paint.
  if (!app.countFrame) {
    app.countFrame = requestAnimationFrame(() => { app.countFrame = 0; countStates(); });
  }
}

async function nodePage(view, hrn) {
  const path = "/nodes/" + encodeURIComponent(hrn);
  const node = await api("GET", path);
  const badge = el("span", { class: "badge", id: "node-state" });
  const paintBadge = () => {
    const { state, pct } = stateOf(node.hrn);
    badge.className = "badge s-" + state;
    badge.dataset.state = state;
    badge.textContent = STATE_LABEL[state] + (state === "imaging" && pct !== null ? " " + pct + "%" : "");
  };
  paintBadge();
  view.append(el("p", {}, el("a", { href: "#/" }, "← Grid")), el("h2", {}, node.hrn + " ", badge));
  view.append(el("dl", { class: "facts" },
    fact("Host name", node.hostname), fact("Testbed", node.domain), fact("Position", "x " + node.x + ", y " + node.y),
    fact("Control IP", node.control_ip), fact("Control MAC", node.control_mac), fact("Disk", node.disk),
    fact("PXE image (inventory)", node.pxe_image || "(default)"), fact("Power driver", node.power ? node.power.split(":")[0] : "none")));

  const boot = el("section", { id: "boot", "aria-labelledby": "boot-h" });
  const power = el("section", { id: "power", "aria-labelledby": "power-h" });
  const rc = el("section", { id: "rc", "aria-labelledby": "rc-h" });
  const cmds = el("section", { id: "commands", "aria-labelledby": "commands-h" });
  const timeline = el("section", { id: "timeline", "aria-labelledby": "timeline-h" });
  view.append(boot, power, rc, cmds, timeline);

  const images = may("operator") ? await api("GET", "/images").catch(() => []) : [];
  const diskImages = may("operator") ? await api("GET", "/disk-images").catch(() => []) : [];

  async function paintBoot() {
    const links = await api("GET", "/boot");
    const l = links.find((x) => x.hrn === node.hrn);
    const body = [el("h3", { id: "boot-h" }, "Boot link")];
    body.push(l ? el("p", { id: "boot-link" }, "Boots ", el("strong", {}, l.image), " until " + fmtTime(l.expires_at) + " (set " + fmtTime(l.set_at) + ")")
      : el("p", { id: "boot-link" }, "No boot link: the node boots its local disk."));
    if (may("operator")) {
      const sel = el("select", { id: "boot-image", "aria-label": "Boot image" },
        images.map((i) => el("option", { value: i.name }, i.name + (i.description ? " — " + i.description : ""))));
      if (l) sel.value = l.image;
      body.push(el("div", { class: "actions" },
        sel,
        el("button", { type: "button", class: "action", id: "set-boot", onclick: () => act(() => api("PUT", path + "/boot", { image: sel.value }), paintBoot) }, "Set boot image"),
        el("button", { type: "button", class: "action", id: "clear-boot", disabled: !l, onclick: () => act(() => api("DELETE", path + "/boot"), paintBoot) }, "Clear boot image")));
    }
    boot.replaceChildren(...body);
  }

  function paintPower(reply) {
    const body = [el("h3", { id: "power-h" }, "Power")];
    const last = (app.events.get(node.hrn) || []).filter((e) => e.source === "power").pop();
    if (reply) body.push(el("p", { id: "power-state" }, "Power state: ", el("strong", {}, reply.state)));
    else if (last) body.push(el("p", { id: "power-state" }, "Last power action: " + last.what + " " + (last.detail || "") + " at " + fmtTime(last.at)));
    else body.push(el("p", { id: "power-state" }, "No power action recorded."));
    if (may("operator") && node.power && node.power !== "none") {
      const btn = (action, label) => el("button", { type: "button", class: "action", "data-power": action,
        onclick: () => act(() => api("POST", path + "/power", { action }), (r) => paintPower(r)) }, label);
      body.push(el("div", { class: "actions" }, btn("status", "Query state"), btn("on", "Power on"), btn("reset", "Reset"),
        btn("offSoft", "Shut down"), btn("offHard", "Power off")));
    }
    power.replaceChildren(...body);
  }

  async function paintRC() {
    let s = null;
    try { s = await api("GET", path + "/rc"); } catch (err) { if (err.status !== 404) throw err; }
    const body = [el("h3", { id: "rc-h" }, "Resource Controller")];
    if (!s || !s.enrolled) {
      body.push(el("p", {}, "No RC enrolled."));
    } else {
      const sb = s.secure_boot === undefined || s.secure_boot === null ? "unknown" : s.secure_boot ? "on" : "off";
      body.push(el("dl", { class: "facts" },
        fact("State", s.state), fact("Enrolled", fmtTime(s.enrolled_at)), fact("Last seen", fmtTime(s.last_seen)),
        fact("RAM image", s.image), fact("Kernel", s.kernel), fact("Addresses", (s.addresses || []).join(", ")),
        fact("Firmware", s.firmware || "unknown"), fact("Secure Boot", sb), fact("RC version", s.version)));
      if (s.disks && s.disks.length) {
        body.push(table("Disks", ["Device", "Size", "Model"], s.disks.map((d) => [d.path, fmtBytes(d.size), d.model || ""])));
      }
    }
    if (may("operator") && s && s.enrolled && !diskImages.length) {
      body.push(el("p", {}, "No disk images stored to load."));
    } else if (may("operator") && s && s.enrolled) {
      const img = el("select", { id: "load-image", "aria-label": "Disk image" }, diskImages.map((d) => el("option", { value: d.name }, d.name)));
      const disk = el("input", { id: "load-disk", "aria-label": "Target disk", value: node.disk || "" });
      body.push(el("div", { class: "actions" }, img, disk,
        el("button", { type: "button", class: "action", id: "load",
          onclick: () => act(() => api("POST", path + "/commands", { type: "LOAD_IMAGE", image: img.value, disk: disk.value }), paintCommands) }, "Load disk image")));
    }
    rc.replaceChildren(...body);
  }

  async function paintCommands() {
    const list = await api("GET", path + "/commands?limit=10");
    cmds.replaceChildren(el("h3", { id: "commands-h" }, "Recent commands"),
      list.length ? table("The node's last commands, newest first", ["Id", "Type", "Image / command", "State", "Progress", "Created"],
        list.map((c) => [String(c.id), c.type, c.image || c.command || (c.args || []).join(" "), c.state + (c.error ? ": " + c.error : ""),
          progress(c), fmtTime(c.created_at)]))
        : el("p", {}, "No commands."));
  }

  function paintTimeline() {
    timeline.replaceChildren(el("h3", { id: "timeline-h" }, "Timeline"), el("p", { class: "loading" }, "loading…"));
    return api("GET", path + "/events").then((events) => {
      // In time order: events are committed (and numbered) in batches.
      events.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
      const tbody = el("tbody");
      let prev = null;
      const row = (e) => {
        const since = prev ? fmtDur(Date.parse(e.at) - Date.parse(prev.at)) : "";
        prev = e;
        return el("tr", {}, el("td", {}, fmtTime(e.at)), el("td", {}, since), el("td", {}, e.source), el("td", {}, e.what), el("td", {}, e.detail || ""));
      };
      for (const e of events) tbody.append(row(e));
      timeline.replaceChildren(el("h3", { id: "timeline-h" }, "Timeline"), phasesOf(events),
        el("table", { class: "timeline" }, el("caption", {}, "Boot events, oldest first, with the time since the one before"),
          el("thead", {}, el("tr", {}, ["Time", "Since previous", "Source", "What", "Detail"].map((h) => el("th", { scope: "col" }, h)))), tbody));
      let lastAt = events.length ? events[events.length - 1].at : null;
      if (!view.isConnected) return; // left meanwhile
      app.onEvent = (e) => {
        paintBadge();
        if (!e || e.hrn !== node.hrn) return;
        if (lastAt && Date.parse(e.at) < Date.parse(lastAt)) {
          // One committed late (the DHCP server's batches): read the
          // timeline again, in its order.
          paintTimeline().catch((err) => showError(err.message));
          return;
        }
        lastAt = e.at;
        events.push(e);
        timeline.querySelector("#phases").replaceWith(phasesOf(events));
        tbody.append(row(e));
        if (e.source === "power") paintPower();
        if (e.source === "rc") { paintRC().catch(() => {}); paintCommands().catch(() => {}); }
      };
    });
  }

  if (!view.isConnected) return;
  app.onCommands = () => { paintBadge(); if (app.commands.has(node.hrn)) paintCommands().catch(() => {}); };
  paintPower();
  await Promise.all([paintBoot(), paintRC(), paintCommands(), paintTimeline()]);
}

// phasesOf sums up the node's last boot: each state it went through, with
// the time it took to get there from the one before.
function phasesOf(events) {
  let state = "unknown";
  let phases = [];
  for (const e of events) {
    const next = classify(e, state);
    if (next === state) continue;
    // A power-on, or a firmware's DHCP that no power-on announced, starts
    // a boot.
    if (next === "power" || (next === "dhcp" && state !== "power")) phases = [];
    phases.push({ state: next, at: Date.parse(e.at) });
    state = next;
  }
  const p = el("p", { id: "phases" });
  if (!phases.length) return p;
  p.append(el("strong", {}, "Last boot: "), STATE_LABEL[phases[0].state]);
  for (let i = 1; i < phases.length; i++) {
    p.append(" → " + STATE_LABEL[phases[i].state] + " (+" + fmtDur(phases[i].at - phases[i - 1].at) + ")");
  }
  if (phases.length > 1) p.append("; " + fmtDur(phases[phases.length - 1].at - phases[0].at) + " in all");
  return p;
}

function fact(k, v) {
  return [el("dt", {}, k), el("dd", {}, v === undefined || v === null || v === "" ? "—" : String(v))];
}

function progress(c) {
  const p = c.progress || {};
  if (!p.total && !p.done) return "";
  if (!p.total) return fmtBytes(p.done);
  const pct = Math.min(100, Math.floor((100 * p.done) / p.total));
  return el("span", {}, el("progress", { max: "100", value: String(pct), "aria-label": c.hrn + " " + pct + "%" }), " " + pct + "% of " + fmtBytes(p.total));
}

// act runs an action, then repaints with its answer; an error is shown.
async function act(fn, then) {
  showError("");
  try {
    const r = await fn();
    if (then) await then(r);
  } catch (err) {
    if (err.status !== 401) showError(err.message);
  }
  // An action may start a load: its progress shows at once.
  pollCommands();
}

async function linksPage(view) {
  view.append(el("h2", {}, "Boot links"));
  const holder = el("div");
  view.append(holder);
  const paint = async () => {
    const links = await api("GET", "/boot");
    const headers = ["Node", "IP", "Image", "Set", "Expires", "References"];
    if (may("operator")) headers.push("Action");
    holder.replaceChildren(links.length ? table("Active pxelinux.cfg links", headers, links.map((l) => {
      const row = [el("a", { href: "#/node/" + encodeURIComponent(l.hrn) }, l.hrn), l.ip, l.image, fmtTime(l.set_at), fmtTime(l.expires_at), String(l.refs)];
      if (may("operator")) {
        row.push(el("button", { type: "button", class: "action", onclick: () => act(() => api("DELETE", "/nodes/" + encodeURIComponent(l.hrn) + "/boot"), paint) }, "Clear"));
      }
      return row;
    })) : el("p", {}, "No boot links: every node boots its local disk."));
  };
  await paint();
}

async function imagesPage(view) {
  const [images, disks] = await Promise.all([api("GET", "/images"), api("GET", "/disk-images")]);
  view.append(el("h2", {}, "Images"),
    images.length ? table("PXE images (boot images)", ["Name", "Description"], images.map((i) => [i.name, i.description])) : el("p", {}, "No PXE images."),
    disks.length ? table("Disk images", ["Name", "Format", "Stored", "Disk size", "Modified"],
      disks.map((d) => [d.name, d.format, fmtBytes(d.size), d.disk_size ? fmtBytes(d.disk_size) : "", fmtTime(d.modified)])) : el("p", {}, "No disk images."));
}

function loadsPage(view) {
  view.append(el("h2", {}, "Loads"));
  const holder = el("div");
  view.append(holder);
  app.onCommands = () => {
    const loads = [...app.commands.values()];
    holder.replaceChildren(loads.length ? table("Disk image loads and saves in progress", ["Node", "Type", "Image", "Disk", "State", "Progress", "Started"],
      loads.map((c) => [el("a", { href: "#/node/" + encodeURIComponent(c.hrn) }, c.hrn), c.type, c.image, c.disk, c.state, progress(c), fmtTime(c.started_at)]))
      : el("p", {}, "No load or save in progress."));
  };
  app.onCommands();
}

// ---- start -------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("token").value.trim());
  });
  $("signout").addEventListener("click", () => signOut(""));
  if (app.token) signIn(app.token);
  else showSignIn("");
});
