// The Dubernetes dashboard: read-only, live from the watch API (Server-Sent
// Events), no polling, no framework, no build step. Everything the server
// sends is written with textContent: nothing is parsed as HTML.
"use strict";

const pods = new Map();
const events = [];
const MAX_EVENTS = 200;
const MAX_LOG_LINES = 300;
let logAbort = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function setConnection(text, cls) {
  const c = document.getElementById("connection");
  c.textContent = text;
  c.className = "status " + cls;
}

function renderPods() {
  const body = document.querySelector("#pods tbody");
  const rows = [...pods.values()].sort((a, b) => a.name.localeCompare(b.name)).map((pod) => {
    const s = pod.status;
    const desired = s.desired_replicas;
    const progress = desired ? Math.round((100 * Math.min(s.updated_replicas, desired)) / desired) : 100;
    // Set through the CSSOM (allowed by the CSP), not an inline style attribute.
    const fill = el("span");
    fill.style.width = progress + "%";
    const name = el("td", { class: "name", title: "show logs" }, pod.name);
    name.addEventListener("click", () => followLogs(pod.name));
    const replicas = el("div", { class: "replicas" });
    for (const r of pod.replicas) {
      const cls = "replica " + (r.ready ? "ready" : "notready") + (r.up_to_date ? "" : " old");
      replicas.append(el("span", { class: cls, "data-replica": r.name, "data-state": r.state, "data-ready": String(r.ready),
        title: r.status + (r.check_error ? " — " + r.check_error : "") },
        `${pod.name}-${r.name.slice(r.name.lastIndexOf("-") + 1)} ${r.state}${r.ready ? " ✓" : ""} rev ${r.revision.slice(0, 7)}`));
    }
    return el("tr", { "data-pod": pod.name, "data-ready": String(s.ready_replicas), "data-desired": String(desired), "data-phase": s.phase },
      name,
      el("td", { class: "phase-" + s.phase }, s.phase + (s.reason ? ` (${s.reason})` : "")),
      el("td", { class: "counts" }, `${s.ready_replicas} / ${desired}`),
      el("td", {}, el("span", { class: "bar", title: `${s.updated_replicas} of ${desired} on revision ${s.revision_number}` },
        fill), ` rev ${s.revision_number}`),
      el("td", {}, s.restarts),
      el("td", {}, replicas));
  });
  body.replaceChildren(...rows);
  document.getElementById("no-pods").hidden = pods.size > 0;
}

function renderEvents() {
  const list = document.getElementById("events");
  list.replaceChildren(...events.slice().reverse().map((e) =>
    el("li", { class: e.kind, "data-reason": e.reason, "data-pod": e.pod },
      el("time", {}, new Date(e.at).toLocaleTimeString()), `${e.pod}: ${e.reason}: ${e.message}`)));
}

function addEvent(e) {
  if (events.some((x) => x.id === e.id)) return;
  events.push(e);
  events.sort((a, b) => a.id - b.id);
  while (events.length > MAX_EVENTS) events.shift();
  renderEvents();
}

function signedOut() {
  setConnection("signed out: run `dubectl dashboard` for a new link", "down");
}

async function loadEvents() {
  const r = await fetch("/v1/events?limit=50", { credentials: "same-origin" });
  if (r.status === 401) return signedOut();
  if (r.ok) for (const e of await r.json()) addEvent(e);
}

async function loadVersion() {
  const r = await fetch("/v1/version", { credentials: "same-origin" });
  if (r.ok) {
    const v = await r.json();
    document.getElementById("instance").textContent = `instance ${v.instance} · server ${v.server}`;
  }
}

function watch() {
  const source = new EventSource("/v1/watch");
  const onPod = (msg) => {
    const change = JSON.parse(msg.data);
    if (change.pod) pods.set(change.name, change.pod);
    renderPods();
  };
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("ADDED", onPod);
  source.addEventListener("MODIFIED", onPod);
  source.addEventListener("DELETED", (msg) => { pods.delete(JSON.parse(msg.data).name); renderPods(); });
  source.addEventListener("EVENT", (msg) => { const c = JSON.parse(msg.data); if (c.event) addEvent(c.event); });
  // The server ends a watcher that fell behind: start again from a fresh list.
  source.addEventListener("error", (msg) => {
    if (msg.data) { source.close(); pods.clear(); setTimeout(watch, 500); return; }
    setConnection("reconnecting…", "down");
    fetch("/v1/version", { credentials: "same-origin" }).then((r) => { if (r.status === 401) { source.close(); signedOut(); } });
  });
}

async function followLogs(name) {
  if (logAbort) logAbort.abort();
  logAbort = new AbortController();
  const out = document.getElementById("logs");
  document.getElementById("log-pod").textContent = name;
  out.textContent = "";
  const lines = [];
  try {
    const r = await fetch(`/v1/pods/${encodeURIComponent(name)}/logs?follow=true&tail=50`,
      { credentials: "same-origin", signal: logAbort.signal });
    if (!r.ok) { out.textContent = `logs: HTTP ${r.status}`; return; }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!text) continue;
        const line = JSON.parse(text);
        lines.push(line.line !== undefined ? `${line.replica} | ${line.line}` : `(${line.code}: ${line.message})`);
        while (lines.length > MAX_LOG_LINES) lines.shift();
      }
      out.textContent = lines.join("\n");
      out.scrollTop = out.scrollHeight;
    }
  } catch (e) {
    if (e.name !== "AbortError") out.textContent += `\n(log stream ended: ${e.message})`;
  }
}

loadVersion();
loadEvents();
watch();
