"use strict";
// The swarmlet dashboard: the API the CLI uses, followed live. Lists come from
// blocking queries (?index=N&wait=), which return as soon as the cluster's state
// moves; the event feed is the /v1/events stream; logs stream from the service's
// tasks. Everything is drawn with textContent, never markup from the cluster.

const state = { info: null, nodes: [], services: [], tasks: [], events: [], selected: null, logsAbort: null };
const MAX_EVENTS = 200, MAX_TASKS_PER_NODE = 40;

const $ = (sel) => document.querySelector(sel);
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    // Styles go through the CSSOM: the page's policy forbids inline style markup.
    else if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A stable color per service, so its tasks look alike in the grid.
function color(name) {
  let x = 0;
  for (const ch of name) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${x % 360} 58% 44%)`;
}
function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 2) return "just now";
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
function bytes(n) {
  if (!n) return "0";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
}

// --- connection state -------------------------------------------------------
let failures = 0;
function connected(ok, why) {
  failures = ok ? 0 : failures + 1;
  const c = $("#conn");
  c.className = "conn " + (ok ? "live" : failures > 2 ? "down" : "");
  c.querySelector(".label").textContent = ok ? "live" : why || "reconnecting";
}

// follow keeps one list current with blocking queries.
async function follow(path, apply) {
  let index = 0;
  for (;;) {
    try {
      const sep = path.includes("?") ? "&" : "?";
      const r = await fetch(index ? `${path}${sep}index=${index}&wait=25s` : path, { cache: "no-store" });
      if (!r.ok) {
        let msg = r.statusText;
        try { msg = (await r.json()).error || msg; } catch (_) {}
        throw new Error(msg);
      }
      const idx = Number(r.headers.get("X-Swarmlet-Index")) || 0;
      apply(await r.json());
      // An index that went back means another leader answered: start afresh.
      index = idx >= index ? idx : 0;
      connected(true);
      scheduleRender();
    } catch (e) {
      connected(false, String(e.message || e).slice(0, 80));
      index = 0;
      await sleep(1000);
    }
  }
}

// readLines calls fn with each line of a streamed response body.
async function readLines(resp, fn) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      fn(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) fn(buf);
}

// followEvents keeps the feed current; after a disconnect it resumes after the
// last event it got, so nothing is missed or shown twice.
async function followEvents() {
  let since = null;
  for (;;) {
    try {
      const q = since === null ? "tail=50" : `since=${since}`;
      const r = await fetch(`/v1/events?${q}`, { cache: "no-store" });
      if (!r.ok) throw new Error(r.statusText);
      if (since === null) since = Number(r.headers.get("X-Swarmlet-Event-Cursor")) || 0;
      await readLines(r, (line) => {
        if (!line.trim()) return;
        const e = JSON.parse(line);
        if (e.error) throw new Error(e.error);
        since = e.id;
        state.events.unshift(e);
        if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
        renderEvents(e.id);
      });
    } catch (e) {
      await sleep(1000);
    }
  }
}

async function followLogs(name) {
  if (state.logsAbort) state.logsAbort.abort();
  const ctl = new AbortController();
  state.logsAbort = ctl;
  const pre = $("#logs");
  pre.textContent = "";
  $("#logs-title").textContent = name;
  const lines = [];
  let pending = false;
  const flush = () => {
    pending = false;
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
    pre.textContent = lines.join("\n");
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  try {
    const r = await fetch(`/v1/services/${encodeURIComponent(name)}/logs?tail=100&follow=true&timestamps=true`, { signal: ctl.signal });
    if (!r.ok) { pre.textContent = (await r.json()).error || r.statusText; return; }
    await readLines(r, (l) => {
      lines.push(l.replace(/^(\S+)T(\d\d:\d\d:\d\d)\.\d+Z /, "$2 "));
      if (lines.length > 500) lines.splice(0, lines.length - 500);
      if (!pending) { pending = true; requestAnimationFrame(flush); }
    });
    if (!lines.length) pre.textContent = "(no output)";
  } catch (e) {
    if (!ctl.signal.aborted) pre.textContent += `\n(log stream ended: ${e.message || e})`;
  }
}

// --- rendering --------------------------------------------------------------
let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function render() {
  renderSummary();
  renderNodes();
  renderServices();
  renderGrid();
}

function renderSummary() {
  const i = state.info;
  const leader = state.nodes.find((n) => n.leader);
  const running = state.tasks.filter((t) => t.status.state === "running" && t.desired_state === "running").length;
  const items = [
    ["cluster", i ? i.cluster_id.slice(0, 8) : "…"],
    ["via", i ? i.hostname : "…"],
    ["leader", leader ? leader.hostname : "none"],
    ["nodes", `${state.nodes.filter((n) => n.status === "ready").length}/${state.nodes.length}`],
    ["services", state.services.length],
    ["tasks running", running],
  ];
  $("#summary").replaceChildren(...items.map(([k, v]) => h("span", {}, k + " ", h("b", {}, v))));
}

// load is what the scheduler has placed on a node: running tasks and reservations.
function loadOf(n) {
  let tasks = 0, cpu = 0, mem = 0;
  for (const t of state.tasks) {
    if (t.node_id !== n.id || t.desired_state !== "running" || ["complete", "shutdown", "failed", "rejected", "orphaned"].includes(t.status.state)) continue;
    tasks++;
    cpu += (t.spec.reservations && t.spec.reservations.nano_cpus) || 0;
    mem += (t.spec.reservations && t.spec.reservations.memory_bytes) || 0;
  }
  return { tasks, cpu, mem };
}

function renderNodes() {
  $("#nodes-count").textContent = `(${state.nodes.length})`;
  const self = state.info && state.info.node_id;
  const loads = new Map(state.nodes.map((n) => [n.id, loadOf(n)]));
  const most = Math.max(1, ...[...loads.values()].map((l) => l.tasks));
  $("#nodes").replaceChildren(...state.nodes.map((n) => {
    const l = loads.get(n.id);
    const capCPU = (n.resources && n.resources.nano_cpus) || 0, capMem = (n.resources && n.resources.memory_bytes) || 0;
    // Load: the larger share of CPU or memory reserved, or, where nothing is
    // reserved, tasks against the busiest node's.
    const reserved = Math.max(capCPU ? l.cpu / capCPU : 0, capMem ? l.mem / capMem : 0);
    const pct = Math.min(100, 100 * (l.cpu || l.mem ? reserved : l.tasks / most));
    const tip = l.cpu || l.mem ? `${pct.toFixed(0)}% of capacity reserved` : `${l.tasks} of the busiest node's ${most} tasks`;
    return h("div", { class: `node ${n.status} ${n.availability}`, "data-host": n.hostname, "data-id": n.id },
      h("div", { class: "top" },
        h("span", { class: "host", title: n.id }, n.hostname),
        h("span", {}, n.leader ? h("span", { class: "badge leader" }, "leader") : null, " ",
          n.id === self ? h("span", { class: "badge self", title: "the node this page talks to" }, "you") : null)),
      h("div", { class: "meta" }, `${n.role} · ${n.addr} · ${n.engine}`),
      h("div", { class: "meta" },
        h("span", { class: "badge " + (n.status === "ready" ? "ok" : "bad") }, n.status), " ",
        n.availability !== "active" ? h("span", { class: "badge warn" }, n.availability) : null),
      h("div", { class: "load" }, `${l.tasks} task${l.tasks === 1 ? "" : "s"}`,
        l.cpu || l.mem ? ` · reserved ${(l.cpu / 1e9).toFixed(1)} CPU, ${bytes(l.mem)}` : "",
        h("div", { class: "bar", title: tip }, h("span", { style: { width: `${pct}%` } }))));
  }));
}

function ports(s) {
  return (s.ports || []).map((p) => p.published_port ? `${p.published_port}→${p.target_port}/${p.protocol}` : `${p.target_port}/${p.protocol}`).join(", ");
}

// progress of a rolling update: tasks meant to run that already run the
// service's current spec version.
function updateOf(s) {
  const tasks = state.tasks.filter((t) => t.service_id === s.id && t.desired_state === "running");
  const old = tasks.filter((t) => t.spec_version < s.spec_version).length;
  const u = s.update_status || s.update || null;
  if (u && (u.state || u.message)) return { text: [u.state, u.message].filter(Boolean).join(": "), pct: null };
  if (!old) return null;
  const done = tasks.length - old;
  return { text: `updating ${done}/${tasks.length}`, pct: tasks.length ? (100 * done) / tasks.length : 0 };
}

function renderServices() {
  $("#services-count").textContent = `(${state.services.length})`;
  const rows = state.services.map((s) => {
    // A job's bar is its completions (of the current run), as service ls shows them.
    const job = s.spec.mode === "replicated-job" || s.spec.mode === "global-job";
    const want = s.spec.mode === "global-job" ? s.desired + (s.completed || 0) : s.spec.replicas;
    const [have, of] = job ? [s.completed || 0, want] : [s.running, s.desired];
    const pct = of ? Math.min(100, (100 * have) / of) : 100;
    const u = job ? null : updateOf(s);
    return h("tr", { class: "svc" + (state.selected === s.spec.name ? " selected" : ""), "data-name": s.spec.name, onclick: () => select(s.spec.name) },
      h("td", { class: "name" }, h("span", { class: "swatch", style: { background: color(s.spec.name) } }), s.spec.name),
      h("td", {}, s.spec.mode),
      h("td", { class: "replicas" }, h("span", { class: "rep" }, job ? `${s.running}/${s.desired} (${have}/${of} completed)` : `${s.running}/${s.desired}`),
        h("div", { class: "bar " + (have >= of ? "ok" : "warn") }, h("span", { style: { width: `${pct}%` } }))),
      h("td", { class: "image" }, s.spec.image),
      h("td", { class: "ports" }, ports(s)),
      h("td", { class: "update" }, u ? [u.text, u.pct !== null ? h("div", { class: "bar" }, h("span", { style: { width: `${u.pct}%` } })) : null] : "—"));
  });
  const body = $("#services tbody");
  body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No services yet: swarmlet service create --name web IMAGE"))]));
}

function renderGrid() {
  const live = (t) => t.desired_state === "running" || !["complete", "shutdown", "failed", "rejected", "orphaned"].includes(t.status.state);
  const cols = state.nodes.map((n) => {
    const tasks = state.tasks.filter((t) => t.node_id === n.id && live(t))
      .sort((a, b) => a.service_name.localeCompare(b.service_name) || a.slot - b.slot);
    const shown = tasks.slice(0, MAX_TASKS_PER_NODE);
    return h("div", { class: `col ${n.status}`, "data-host": n.hostname },
      h("h3", {}, h("span", {}, n.hostname, n.leader ? " ★" : ""), h("span", { class: "n" }, tasks.length)),
      h("div", { class: "tasks" },
        shown.map((t) => h("div", { class: `task ${t.status.state}`, "data-service": t.service_name, style: { background: color(t.service_name) }, title: `${t.id}\n${t.status.err || t.pending_reason || ""}` },
          h("div", { class: "tn" }, t.slot ? `${t.service_name}.${t.slot}` : t.service_name),
          h("div", { class: "ts" }, `${t.status.state}${t.desired_state !== "running" ? " → " + t.desired_state : ""} · ${ago(t.status.timestamp)}`))),
        tasks.length > shown.length ? h("div", { class: "more" }, `+${tasks.length - shown.length} more`) : null,
        tasks.length ? null : h("div", { class: "empty" }, "idle")));
  });
  const pending = state.tasks.filter((t) => !t.node_id && t.desired_state === "running" && ["new", "pending"].includes(t.status.state));
  if (pending.length) {
    cols.push(h("div", { class: "col pending" },
      h("h3", {}, h("span", {}, "unplaced"), h("span", { class: "n" }, pending.length)),
      h("div", { class: "tasks" }, pending.slice(0, MAX_TASKS_PER_NODE).map((t) =>
        h("div", { class: "task pending", style: { background: color(t.service_name) }, title: t.pending_reason || "" },
          h("div", { class: "tn" }, `${t.service_name}.${t.slot}`), h("div", { class: "ts" }, t.pending_reason || "pending"))))));
  }
  $("#grid").replaceChildren(...cols);
}

function renderEvents(newest) {
  $("#events").replaceChildren(...state.events.map((e) => {
    const a = e.attributes || {};
    const detail = e.type === "task" ? [a.node && nodeName(a.node), a.error || a.reason].filter(Boolean).join(" · ")
      : e.type === "service" ? `replicas ${a.replicas || ""}` : e.type === "leader" ? `term ${a.term}` : a.addr || "";
    return h("li", { class: e.id === newest ? "new" : "", "data-id": e.id },
      h("time", { datetime: e.time || "" }, e.time ? new Date(e.time).toLocaleTimeString([], { hour12: false }) : "—"),
      h("div", { class: "what" }, h("b", {}, `${e.type} ${e.action}`), " ", e.name || e.object_id || "",
        detail ? h("div", { class: "attr" }, detail) : null));
  }));
}

function nodeName(id) {
  const n = state.nodes.find((n) => n.id === id);
  return n ? n.hostname : id.slice(0, 8);
}

function select(name) {
  state.selected = name;
  renderServices();
  followLogs(name);
}

// --- start ------------------------------------------------------------------
async function loadInfo() {
  for (;;) {
    try {
      const r = await fetch("/v1/info", { cache: "no-store" });
      if (r.ok) { state.info = await r.json(); scheduleRender(); }
    } catch (_) {}
    await sleep(5000);
  }
}

loadInfo();
follow("/v1/nodes", (v) => { state.nodes = v; });
follow("/v1/services", (v) => { state.services = v; });
follow("/v1/tasks", (v) => { state.tasks = v; });
followEvents();
setInterval(renderGrid, 15000); // keep "5s ago" honest between changes
