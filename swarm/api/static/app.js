"use strict";
// The swarm web UI: nodes and jobs at a glance, kept fresh by short polling.
//
// No framework and no build step. Everything the API returns is shown through
// textContent, text nodes and DOM properties, never innerHTML, so a job name, a label or
// a line of stdout holding markup is displayed as text (the page's CSP also forbids
// inline script). Every /api/v1 call carries `Authorization: Bearer <token>`, like the
// CLI: the token arrives once in the URL fragment (#token=…, which browsers never send
// to the server), moves to sessionStorage, and leaves the address bar.

const TOKEN_KEY = "swarm.api-token";
const POLL_MS = 2000; // nodes, jobs and an open job: an operator sees changes within 2 s
const STATS_MS = 10000; // the chart moves by the minute: no need to ask more often
const JOBS_PAGE = 100;
const MAX_JOBS = 1000;
const LOG_LIMIT = 2 * 1024 * 1024; // characters kept per stream; the archive has it all
const JOB_STATES = ["pending", "queued", "running", "completed", "failed", "stopped"];
const ENDED = new Set(["completed", "failed", "stopped"]);
const FILTERS = [
  { label: "all", states: "" },
  { label: "active", states: "pending,queued,running" },
  ...JOB_STATES.map((s) => ({ label: s, states: s })),
];

const ui = {
  token: null, // null: not known yet; "": the node asks for none
  agent: null, // this node, from /agent
  nodes: new Map(), // peer id -> node, for names in the job tables
  filter: "",
  jobsLimit: JOBS_PAGE,
  stateCounts: {},
  job: null, // the job page: {id, data, logs: AbortController}
  lastStats: 0,
  jobsAsked: 0,
  jobsSeen: "", // ids and states last shown: when they change, the chart is redrawn too
  timer: null,
  busy: false,
  again: false, // asked to poll while a poll was running: poll again as soon as it ends
};

// ---- small DOM helpers ------------------------------------------------------------

const $ = (id) => document.getElementById(id);

// el("td", {className: "x", title: "y"}, "text", otherNode): children become text nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(id) {
  for (const section of ["login", "overview", "job"]) $(section).hidden = section !== id;
}

function setError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function setLive(kind, text) {
  const live = $("live");
  live.dataset.live = kind;
  live.textContent = text;
}

// ---- formatting -------------------------------------------------------------------

const shortId = (id) => (id ? id.slice(0, 8) : "");
const shortPeer = (id) => (id && id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-8)}` : id || "");
const shortDigest = (d) => (d && d.startsWith("sha256:") ? `sha256:${d.slice(7, 19)}…` : d || "");

function nodeName(peerId) {
  const node = ui.nodes.get(peerId);
  return node ? node.name : shortPeer(peerId);
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function formatAgo(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 2) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

function formatTime(iso) {
  const t = new Date(iso);
  const today = new Date().toDateString() === t.toDateString();
  return today ? t.toLocaleTimeString() : t.toLocaleString();
}

function formatBytes(n) {
  if (!n && n !== 0) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

// Elapsed seconds of a job: its final duration once ended, else counted from `created`.
function jobDuration(job) {
  if (job.duration !== null && job.duration !== undefined) return job.duration;
  if (ENDED.has(job.state)) return (Date.parse(job.updated) - Date.parse(job.created)) / 1000;
  return (Date.now() - Date.parse(job.created)) / 1000;
}

function stateBadge(state, kind = "state") {
  // Only known names become class names; anything else is shown plainly.
  const known = /^[a-z]+$/.test(state || "") ? ` ${kind}-${state}` : "";
  return el("span", { className: `badge${known}` }, state || "?");
}

// ---- the API ----------------------------------------------------------------------

class Unauthorized extends Error {}
// The node answered, with an error (a network failure is a TypeError instead).
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (ui.token) headers.set("Authorization", `Bearer ${ui.token}`);
  const response = await fetch(`/api/v1${path}`, { ...options, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized("the node refused the token");
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      // not JSON: keep the status line
    }
    throw new ApiError(detail, response.status);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

// Downloads need the bearer header, which a plain <a href> cannot send: fetch the
// archive, then hand the browser a short-lived blob: URL to save.
async function download(path, fallbackName, button) {
  button.disabled = true;
  const label = button.textContent;
  button.textContent = "Downloading…";
  try {
    const response = await api(path);
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: match ? match[1] : fallbackName });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setError("");
  } catch (error) {
    handleError(error, `download failed: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function handleError(error, message) {
  if (error instanceof Unauthorized) {
    forgetToken("The node refused the saved token (it changes when the node restarts).");
    return;
  }
  setError(message || error.message);
}

// ---- the token ----------------------------------------------------------------------

// `#token=…` from the banner's URL: keep it for this tab, then clear the address bar.
function takeTokenFromFragment() {
  const fragment = location.hash.replace(/^#/, "");
  if (!fragment.startsWith("token=")) return null;
  let token = fragment.slice("token=".length);
  try {
    token = decodeURIComponent(token);
  } catch (_) {
    // not percent-encoded: take it as it is
  }
  history.replaceState(null, "", location.pathname + location.search);
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  return token || null;
}

function forgetToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  ui.token = null;
  stopPolling();
  stopLogs();
  $("forget").hidden = true;
  $("login-error").textContent = message || "";
  setLive("offline", "no token");
  show("login");
  $("token-input").focus();
}

// The header names the node this page talks to.
async function refreshAgent() {
  const agent = await getJson("/agent");
  ui.agent = agent;
  $("node-name").textContent = `${agent.name} · ${shortPeer(agent.peer_id)}`;
  $("node-name").title = agent.peer_id;
}

async function signIn(token) {
  ui.token = token;
  try {
    await refreshAgent();
  } catch (error) {
    if (error instanceof Unauthorized) {
      const asked = token ? "The node refused this token." : "";
      forgetToken(asked);
      return;
    }
    setLive("offline", "cannot reach the node");
    setError(`cannot reach the node: ${error.message}`);
  }
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  $("forget").hidden = !token;
  $("login-error").textContent = "";
  route();
}

// ---- the overview: nodes, chart, jobs -------------------------------------------------

function renderNodes(nodes) {
  ui.nodes = new Map(nodes.map((n) => [n.peer_id, n]));
  $("nodes-count").textContent = `${nodes.length}`;
  const rows = nodes.map((node) => {
    const res = node.resources || {};
    const gpus = res.gpus || [];
    return el(
      "tr",
      { dataset: { peer: node.peer_id, status: node.status } },
      el("td", {}, el("strong", {}, node.name), node.self ? el("span", { className: "tag" }, "this node") : null),
      el("td", { className: "mono", title: node.peer_id }, shortPeer(node.peer_id)),
      el("td", {}, (node.roles || []).join(", ")),
      el("td", {}, stateBadge(node.status, "status")),
      el("td", {}, Object.entries(node.labels || {}).map(([k, v]) => el("span", { className: "chip", title: `${k}=${v}` }, `${k}=${v}`))),
      el("td", {}, `${res.cpu ?? "?"} CPU · ${formatBytes(res.memory_free)} / ${formatBytes(res.memory)}`),
      el("td", { title: gpus.map((g) => g.name).join(", ") }, `${res.gpu ?? gpus.length}`),
      el("td", {}, (node.datasets || []).map((d) => el("span", { className: "chip", title: d }, d))),
      el("td", { className: "num" }, `${node.running ?? 0} / ${node.queued ?? 0}`),
      el("td", { title: node.last_seen }, node.self ? "—" : formatAgo(node.last_seen)),
    );
  });
  $("nodes").tBodies[0].replaceChildren(...rows);
}

function renderFilters() {
  const counts = ui.stateCounts;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const buttons = FILTERS.map((f) => {
    const n = f.states ? f.states.split(",").reduce((a, s) => a + (counts[s] || 0), 0) : total;
    const button = el(
      "button",
      { type: "button", className: f.states === ui.filter ? "filter on" : "filter", dataset: { filter: f.label } },
      f.label,
      el("span", { className: "n" }, `${n}`),
    );
    button.addEventListener("click", () => {
      ui.filter = f.states;
      ui.jobsLimit = JOBS_PAGE;
      renderFilters();
      refreshJobs().catch((e) => handleError(e));
    });
    return button;
  });
  $("filters").replaceChildren(...buttons);
}

function renderJobs(jobs) {
  const rows = jobs.map((job) => {
    const link = el("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name);
    const codes = [...new Set(job.executions.map((e) => e.exit_code).filter((c) => c !== null))];
    const nodes = [...new Set(job.executions.filter((e) => e.state !== "cancelled").map((e) => e.node_id))];
    const target = job.target === "all" ? "all" : job.count > 1 ? `any ×${job.count}` : "any";
    const row = el(
      "tr",
      { dataset: { job: job.id, state: job.state } },
      el("td", {}, stateBadge(job.state)),
      el("td", { className: "name", title: job.reason || "" }, link),
      el("td", { className: "mono" }, shortId(job.id)),
      el("td", { className: "mono", title: job.module }, shortDigest(job.module)),
      el("td", {}, target),
      el("td", { title: nodes.join("\n") }, nodes.map(nodeName).join(", ") || "—"),
      el("td", { title: job.created }, formatTime(job.created)),
      el("td", { className: "num" }, formatDuration(jobDuration(job))),
      el("td", { className: codes.some((c) => c !== 0) ? "num bad" : "num" }, codes.join(", ") || "—"),
    );
    row.addEventListener("click", (event) => {
      if (event.target.closest("a")) return; // the link itself navigates
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    });
    return row;
  });
  $("jobs").tBodies[0].replaceChildren(...rows);
  $("jobs-empty").hidden = jobs.length > 0;
  $("jobs-count").textContent = ui.filter ? `${jobs.length} shown` : "";
  $("more").hidden = jobs.length < ui.jobsLimit || ui.jobsLimit >= MAX_JOBS;
}

async function refreshNodes() {
  renderNodes(await getJson("/nodes"));
}

async function refreshJobs() {
  const query = new URLSearchParams({ limit: String(ui.jobsLimit) });
  if (ui.filter) query.set("state", ui.filter);
  const asked = ++ui.jobsAsked;
  let jobs;
  try {
    jobs = await getJson(`/ui/jobs?${query}`);
  } catch (error) {
    // 503: a compute-only node, which keeps no jobs. Say so instead of an error each poll.
    if (!(error instanceof ApiError && error.status === 503)) throw error;
    ui.lastStats = Infinity;
    showJobs(false);
    return;
  }
  showJobs(true);
  if (asked !== ui.jobsAsked) return; // a newer filter's answer is coming
  renderJobs(jobs);
  const seen = jobs.map((j) => `${j.id}:${j.state}`).join(",");
  if (seen !== ui.jobsSeen) ui.lastStats = 0; // something ended or started: counts moved
  ui.jobsSeen = seen;
}

function showJobs(yes) {
  $("no-jobs").hidden = yes;
  for (const card of document.querySelectorAll(".chart-card, .jobs-card")) card.hidden = !yes;
}

async function refreshStats() {
  const stats = await getJson("/ui/stats?minutes=30");
  ui.stateCounts = stats.states;
  ui.lastStats = Date.now();
  renderFilters();
  window.swarmChart.draw($("chart"), stats.minutes);
}

// ---- one job ------------------------------------------------------------------------

function renderJob(job) {
  $("job-name").textContent = job.name;
  $("job-state").replaceChildren(stateBadge(job.state));
  $("job-reason").textContent = job.reason || "";
  const spec = job.spec || {};
  const task = spec.task || {};
  const facts = [
    ["Job id", job.id],
    ["Module", task.module],
    ["Target", spec.type === "ops" ? "all nodes that bid (ops)" : `any ${spec.count || 1} node(s)`],
    ["Submitted", formatTime(job.created)],
    [ENDED.has(job.state) ? "Ended" : "Updated", formatTime(job.updated)],
    ["Duration", formatDuration(jobDuration(job))],
  ];
  $("job-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "")]));
  $("job-stop").hidden = ENDED.has(job.state);
  $("job-spec").textContent = JSON.stringify(spec, null, 2);

  $("executions").tBodies[0].replaceChildren(
    ...job.executions.map((e) => {
      const seconds = (Date.parse(e.updated) - Date.parse(e.created)) / 1000;
      const button = el("button", { type: "button", className: "quiet" }, "download");
      button.addEventListener("click", () =>
        download(
          `/jobs/${encodeURIComponent(job.id)}/results/${encodeURIComponent(e.id)}`,
          `job-${shortId(job.id)}-${shortId(e.id)}.tar.zst`,
          button,
        ),
      );
      const hasResults = ["completed", "failed"].includes(e.state);
      return el(
        "tr",
        { dataset: { execution: e.id, state: e.state } },
        el("td", { className: "mono", title: e.id }, shortId(e.id)),
        el("td", { title: e.node_id }, nodeName(e.node_id)),
        el("td", {}, stateBadge(e.state)),
        el("td", { className: e.exit_code ? "num bad" : "num" }, e.exit_code ?? "—"),
        el("td", {}, e.status || "—"),
        el("td", { className: "message" }, e.message || ""),
        el("td", { className: "num" }, formatDuration(seconds)),
        el("td", {}, hasResults ? button : "—"),
      );
    }),
  );

  $("events").replaceChildren(
    ...job.events.map((ev) =>
      el(
        "li",
        { dataset: { kind: ev.kind } },
        el("time", { dateTime: ev.at, title: ev.at }, formatTime(ev.at)),
        el("span", { className: "chip" }, ev.kind),
        ev.node_id ? el("span", { className: "who", title: ev.node_id }, nodeName(ev.node_id)) : null,
        el("span", { className: "what" }, ev.message),
      ),
    ),
  );
}

// One block per execution, created when its first chunk (or the job) names it.
function logBlock(executionId, nodeId) {
  let block = document.querySelector(`[data-log="${CSS.escape(executionId)}"]`);
  if (block) return block;
  const pane = (stream) =>
    el("div", { className: "pane" }, el("h3", {}, stream), el("pre", { className: `log ${stream}`, dataset: { stream, size: "0" } }));
  block = el(
    "div",
    { className: "log-block", dataset: { log: executionId } },
    el("h3", { className: "log-title" }, `${nodeName(nodeId)} · execution ${shortId(executionId)}`),
    el("div", { className: "panes" }, pane("stdout"), pane("stderr")),
  );
  $("logs").append(block);
  return block;
}

function appendLog(chunk) {
  const stream = chunk.stream === "stderr" ? "stderr" : "stdout";
  const pre = logBlock(chunk.execution_id, chunk.node_id).querySelector(`pre.${stream}`);
  const size = Number(pre.dataset.size);
  const data = String(chunk.data ?? "");
  if (size >= LOG_LIMIT) return;
  const kept = data.slice(0, LOG_LIMIT - size);
  pre.append(kept); // a text node: markup in the output stays text
  pre.dataset.size = String(size + kept.length);
  if (size + data.length > LOG_LIMIT) {
    pre.append(el("span", { className: "muted" }, "\n… more in the results archive (download above)"));
  }
}

function stopLogs() {
  if (ui.job && ui.job.logs) ui.job.logs.abort();
  if (ui.job) ui.job.logs = null;
}

function clearLogs() {
  for (const pre of document.querySelectorAll("#logs pre.log")) {
    pre.replaceChildren();
    pre.dataset.size = "0";
  }
}

// Read the NDJSON log stream: everything stored so far, then (follow) chunks as they
// come, until the job ends. A stream cut short is read again from the start on the next
// poll, so the panes are cleared first.
async function streamLogs(job, follow) {
  const controller = new AbortController();
  job.logs = controller;
  const status = $("logs-state");
  status.textContent = follow ? "live" : "";
  status.classList.remove("error");
  clearLogs();
  try {
    const path = `/jobs/${encodeURIComponent(job.id)}/logs?follow=${follow}`;
    const response = await api(path, { signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines) if (line.trim()) appendLog(JSON.parse(line));
    }
    if (buffer.trim()) appendLog(JSON.parse(buffer));
    job.logsDone = true; // the stream ends when the job has
    status.textContent = "";
    if (follow && ui.job === job) poll(); // show the job's end now, not at the next tick
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof Unauthorized) return handleError(error);
    status.textContent = `not available: ${error.message}`;
    status.classList.add("error");
  } finally {
    if (job.logs === controller) job.logs = null;
  }
}

async function refreshJob() {
  const job = ui.job;
  const data = await getJson(`/jobs/${encodeURIComponent(job.id)}`);
  if (ui.job !== job) return; // the user moved on while we waited
  job.data = data;
  renderJob(data);
  for (const e of data.executions) if (e.state !== "cancelled") logBlock(e.id, e.node_id);
  // Follow while the job lives; once it has ended, one read of what is stored.
  if (!job.logs && !job.logsDone) streamLogs(job, !ENDED.has(data.state));
}

// ---- routing and polling ------------------------------------------------------------

function currentJobId() {
  const match = /^#\/jobs\/([^/?#]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function route() {
  if (ui.token === null) return;
  setError("");
  const jobId = currentJobId();
  if (jobId) {
    if (!ui.job || ui.job.id !== jobId) {
      stopLogs();
      ui.job = { id: jobId, data: null, logs: null, logsDone: false };
      $("logs").replaceChildren();
      $("events").replaceChildren();
      $("executions").tBodies[0].replaceChildren();
      $("job-name").textContent = shortId(jobId);
      $("job-state").replaceChildren();
      $("job-facts").replaceChildren();
      $("job-spec").textContent = "";
    }
    show("job");
  } else {
    stopLogs();
    ui.job = null;
    ui.lastStats = 0; // redraw the chart at the width it has now
    show("overview");
  }
  poll();
}

async function poll() {
  clearTimeout(ui.timer);
  if (ui.token === null) return;
  if (ui.busy) {
    ui.again = true;
    return;
  }
  if (!document.hidden) {
    ui.busy = true;
    try {
      const work = [refreshNodes()];
      if (!ui.agent) work.push(refreshAgent()); // the node was unreachable at sign-in
      if (ui.job) {
        // Once a job has ended and been shown, it cannot change any more.
        if (!ui.job.data || !ENDED.has(ui.job.data.state)) work.push(refreshJob());
      } else {
        work.push(refreshJobs()); // then the stats, if due or if the jobs changed
      }
      await Promise.all(work);
      if (!ui.job && Date.now() - ui.lastStats >= STATS_MS) await refreshStats();
      setLive("live", `live · ${new Date().toLocaleTimeString()}`);
      $("live").title = `refreshed every ${POLL_MS / 1000} s`;
      setError("");
    } catch (error) {
      if (error instanceof Unauthorized) {
        ui.busy = false;
        handleError(error);
        return;
      }
      if (error instanceof ApiError) {
        setError(error.message); // e.g. no such job: the node itself is fine
      } else {
        setLive("offline", "offline");
        $("live").title = error.message;
        setError(`cannot reach the node: ${error.message}`);
      }
    } finally {
      ui.busy = false;
    }
  }
  if (ui.again) {
    ui.again = false;
    return poll();
  }
  ui.timer = setTimeout(poll, POLL_MS);
}

function stopPolling() {
  clearTimeout(ui.timer);
  ui.timer = null;
}

// ---- start ----------------------------------------------------------------------------

function start() {
  takeTokenFromFragment();
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) signIn(token);
  });
  $("forget").addEventListener("click", () => forgetToken("Token forgotten."));
  $("more").addEventListener("click", () => {
    ui.jobsLimit = Math.min(MAX_JOBS, ui.jobsLimit + JOBS_PAGE * 2);
    refreshJobs().catch((e) => handleError(e));
  });
  $("job-download").addEventListener("click", (event) => {
    const job = ui.job;
    if (job) download(`/jobs/${encodeURIComponent(job.id)}/results`, `job-${shortId(job.id)}.tar.zst`, event.currentTarget);
  });
  $("job-stop").addEventListener("click", async (event) => {
    const job = ui.job;
    const button = event.currentTarget;
    if (!job || !window.confirm(`Stop job ${shortId(job.id)} wherever it runs?`)) return;
    button.disabled = true;
    try {
      await api(`/jobs/${encodeURIComponent(job.id)}/stop`, { method: "POST" });
      poll(); // show it stopped now
    } catch (error) {
      handleError(error);
    } finally {
      button.disabled = false;
    }
  });
  window.addEventListener("hashchange", () => {
    const token = takeTokenFromFragment(); // someone pasted a fresh #token= URL
    if (token) signIn(token);
    else route();
  });
  // A hidden tab does not poll; it catches up as soon as it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  renderFilters();
  // With no saved token, first ask without one: a node started with --api-token '' needs none.
  signIn(sessionStorage.getItem(TOKEN_KEY) || "");
}

start();
