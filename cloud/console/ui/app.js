// iotsim console. Every piece of data (thing names, topics, payloads) is
// put into the page as text (textContent, createTextNode), never as HTML,
// and the Content-Security-Policy allows no inline script: nothing a
// device sends can run here.
"use strict";

const API = "api/";
let current = null; // the page's cleanup: closes its stream and timers

// el builds an element; string children become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function table(headers, rows) {
  return el("div", { class: "table" },
    el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)));
}

function pretty(v) { return v === undefined ? "" : JSON.stringify(v, null, 2); }
function when(t) { return t ? new Date(t).toLocaleString() : ""; }

async function api(path, opts) {
  const r = await fetch(API + path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, opts));
  const text = await r.text();
  let body;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}

function status(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

// live opens a Server-Sent Events stream on topic filters; onMessage gets
// each message, the header shows whether the stream is up and its drops.
function live(filters, onMessage, onDrops) {
  const q = filters.map((f) => "filter=" + encodeURIComponent(f)).join("&");
  const url = API + "stream?" + q;
  const es = new EventSource(url);
  const badge = document.getElementById("live");
  es.addEventListener("ready", () => { badge.textContent = "live"; badge.className = "live on"; });
  es.addEventListener("message", (ev) => onMessage(JSON.parse(ev.data)));
  es.addEventListener("dropped", (ev) => {
    const d = JSON.parse(ev.data).dropped;
    badge.textContent = "live, " + d + " dropped";
    if (onDrops) onDrops(d);
  });
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) { badge.textContent = "reconnecting"; badge.className = "live off"; return; }
    // Refused (a bad filter, the token gone): say why.
    badge.textContent = "offline"; badge.className = "live off";
    fetch(url, { credentials: "same-origin" }).then(async (r) => {
      const text = await r.text();
      let msg = text;
      try { msg = JSON.parse(text).error; } catch (e) { /* plain text */ }
      status("live view refused: " + msg, true);
    }).catch((e) => status("live view: " + e.message, true));
  };
  return () => { es.close(); badge.textContent = "offline"; badge.className = "live off"; };
}

// debounce runs fn once after a burst of calls.
function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

function poll(fn, ms) {
  const badge = document.getElementById("live");
  badge.textContent = "refreshed every " + ms / 1000 + " s";
  badge.className = "live on";
  fn();
  const t = setInterval(fn, ms);
  return () => { clearInterval(t); badge.textContent = "offline"; badge.className = "live off"; };
}

// ---- fleet ----
function fleetPage(main) {
  const body = el("tbody");
  main.append(el("h2", { text: "Fleet" }),
    el("div", { class: "table" }, el("table", { id: "things" },
      el("thead", {}, el("tr", {}, ["Thing", "Connection", "Certificates", "Groups"].map((h) => el("th", { text: h })))),
      body)));
  const load = async () => {
    try {
      const things = await api("things");
      body.replaceChildren(...things.map((t) => {
        const conn = t.connection.connected ? "connected" : "disconnected";
        return el("tr", { "data-thing": t.name },
          el("td", {}, el("a", { href: "#/thing/" + encodeURIComponent(t.name), text: t.name })),
          el("td", {}, el("span", { class: "state " + conn, text: conn }),
            t.connection.since ? el("div", { class: "muted", text: "since " + when(t.connection.since) + (t.connection.reason ? " (" + t.connection.reason + ")" : "") }) : null),
          el("td", {}, t.certificates.length ? t.certificates.map((c) =>
            el("div", {}, el("span", { class: "state " + c.status, text: c.status }), " ", el("span", { class: "muted", text: c.id.slice(0, 12) }))) : el("span", { class: "muted", text: "none" })),
          el("td", { text: t.groups.join(", ") }));
      }));
      if (!things.length) body.append(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "No things yet." })));
      status("fleet loaded " + new Date().toLocaleTimeString());
    } catch (e) { status("fleet: " + e.message, true); }
  };
  load();
  return live(["$aws/events/presence/+/+"], debounce(load, 100));
}

// ---- a thing ----
function thingPage(main, name) {
  const head = el("div");
  const shadows = el("div");
  main.append(el("h2", {}, "Thing ", el("span", { id: "thing-name", text: name })), head, shadows);
  const editors = {}; // shadow name -> textarea, kept across reloads
  const update = async (shadowName, doc) => {
    try {
      const q = shadowName ? "?name=" + encodeURIComponent(shadowName) : "";
      await api("things/" + encodeURIComponent(name) + "/shadow" + q, { method: "POST", body: JSON.stringify(doc) });
      status("desired state sent to " + name + (shadowName ? " (" + shadowName + ")" : ""));
    } catch (e) { status("update: " + e.message, true); }
  };
  const load = async () => {
    let t;
    try { t = await api("things/" + encodeURIComponent(name)); } catch (e) { status(e.message, true); return; }
    const conn = t.connection.connected ? "connected" : "disconnected";
    head.replaceChildren(el("p", {}, el("span", { id: "thing-connection", class: "state " + conn, text: conn }),
      " · certificates: ", t.certificates.map((c) => c.status).join(", ") || "none",
      " · groups: ", t.groups.join(", ") || "none"));
    shadows.replaceChildren(...t.shadows.map((s) => shadowCard(s, editors, update)));
    status("shadow loaded " + new Date().toLocaleTimeString());
  };
  load();
  const reload = debounce(load, 50);
  return live(["$aws/things/" + name + "/shadow/#", "$aws/events/presence/+/" + name], reload);
}

function shadowCard(s, editors, update) {
  const label = s.name ? "named shadow " + s.name : "classic shadow";
  const id = s.name ? "shadow-" + s.name : "shadow";
  const card = el("section", { class: "card", "data-shadow": s.name || "" }, el("h3", { text: label }));
  const doc = s.document;
  const state = (doc && doc.state) || {};
  card.append(el("p", { class: "muted" }, "version ", el("span", { class: "version", text: doc ? String(doc.version) : "none" }),
    doc && doc.timestamp ? " · updated " + when(doc.timestamp * 1000) : ""));
  card.append(el("div", { class: "grid" },
    ["reported", "desired", "delta"].map((k) => el("div", {}, el("label", { text: k }),
      el("pre", { class: k, id: id + "-" + k, text: state[k] === undefined ? "—" : pretty(state[k]) })))));
  if (!s.name) {
    const armed = state.reported && state.reported.alarm && state.reported.alarm.armed;
    card.append(el("p", {}, "Chocolate box alarm: ",
      el("span", { id: "armed", class: "state " + (armed ? "connected" : "disconnected"), text: armed ? "armed" : "disarmed" })),
    el("button", { id: "arm", onclick: () => update("", { state: { desired: { alarm: { armed: true } } } }) }, "Arm"),
    el("button", { id: "disarm", class: "secondary", onclick: () => update("", { state: { desired: { alarm: { armed: false } } } }) }, "Disarm"));
  }
  const key = s.name || "";
  if (!editors[key]) {
    editors[key] = el("textarea", { id: id + "-editor", "aria-label": "desired state of the " + label, spellcheck: "false" });
    editors[key].value = pretty(state.desired || {});
  }
  card.append(el("label", { text: "Edit desired state (JSON; null removes a key)" }), editors[key],
    el("button", { id: id + "-send", onclick: () => {
      let desired;
      try { desired = JSON.parse(editors[key].value); } catch (e) { status("desired state is not JSON: " + e.message, true); return; }
      update(s.name, { state: { desired: desired } });
    } }, "Update desired"));
  return card;
}

// ---- live messages ----
function messagesPage(main, params) {
  const input = el("textarea", { id: "filters", "aria-label": "topic filters", spellcheck: "false" });
  input.value = params.get("f") || "alarms/#\nnotifications/#";
  const list = el("div", { id: "messages" });
  const drops = el("span", { id: "drops", class: "drops" });
  const count = el("span", { id: "count", text: "0" });
  let stop = null;
  let n = 0;
  const watch = () => {
    if (stop) stop();
    const filters = input.value.split(/[\n,]/).map((f) => f.trim()).filter((f) => f);
    list.replaceChildren();
    n = 0; count.textContent = "0"; drops.textContent = "";
    stop = live(filters, (m) => {
      n++;
      count.textContent = String(n);
      const payload = m.base64 ? "(binary, base64) " + m.payload : m.payload;
      let shown = payload;
      if (!m.base64) { try { shown = pretty(JSON.parse(payload)); } catch (e) { shown = payload; } }
      list.prepend(el("div", { class: "msg" }, el("span", { class: "topic", text: m.topic }), el("span", { class: "time", text: new Date(m.time).toLocaleTimeString() }),
        el("pre", { class: "payload", text: shown + (m.truncated ? "\n… " + m.truncated + " more bytes" : "") })));
      while (list.childElementCount > 500) list.lastElementChild.remove();
    }, (d) => { drops.textContent = d + " messages dropped: this page fell behind the broker"; });
    status("watching " + filters.join(", "));
  };
  main.append(el("h2", { text: "Live messages" }),
    el("label", { for: "filters", text: "Topic filters, one a line (+ and # wildcards)" }), input,
    el("button", { id: "watch", onclick: watch }, "Watch"),
    el("p", { class: "muted" }, count, " messages shown (newest first, last 500) ", drops), list);
  watch();
  return () => { if (stop) stop(); };
}

// ---- jobs ----
function jobsPage(main) {
  const list = el("div", { id: "jobs" });
  const id = el("input", { type: "text", id: "job-id", placeholder: "job id, e.g. reboot-1" });
  const things = el("input", { type: "text", id: "job-things", placeholder: "thing names, comma separated" });
  const doc = el("textarea", { id: "job-document", spellcheck: "false" });
  doc.value = '{\n  "operation": "reboot"\n}';
  const create = async () => {
    try {
      await api("jobs", { method: "POST", body: JSON.stringify({ jobId: id.value.trim(), things: things.value.split(",").map((s) => s.trim()).filter((s) => s), document: doc.value }) });
      status("job " + id.value + " created");
      load();
    } catch (e) { status("create job: " + e.message, true); }
  };
  const load = async () => {
    try {
      const jobs = await api("jobs");
      list.replaceChildren(...jobs.map((j) => el("section", { class: "card", "data-job": j.jobId },
        el("h3", {}, j.jobId, " ", el("span", { class: "state " + j.status, text: j.status })),
        el("p", { class: "muted", text: "created " + when(j.createdAt) + (j.description ? " · " + j.description : "") }),
        el("pre", { text: j.document }),
        table(["Thing", "Status", "Details", "Updated"], j.executions.map((x) => el("tr", {},
          el("td", { text: x.thingName }), el("td", {}, el("span", { class: "state " + x.status, text: x.status })),
          el("td", { text: x.statusDetails ? JSON.stringify(x.statusDetails) : "" }), el("td", { text: when(x.lastUpdatedAt) })))))));
      if (!jobs.length) list.append(el("p", { class: "muted", text: "No jobs yet." }));
    } catch (e) { status("jobs: " + e.message, true); }
  };
  main.append(el("h2", { text: "Jobs" }),
    el("section", { class: "card" }, el("h3", { text: "Create a job" }),
      el("label", { for: "job-id", text: "Job id" }), id,
      el("label", { for: "job-things", text: "Targets" }), things,
      el("label", { for: "job-document", text: "Job document (JSON)" }), doc,
      el("button", { id: "job-create", onclick: create }, "Create job")),
    list);
  return poll(load, 3000);
}

// ---- Device Defender ----
function defenderPage(main) {
  const body = el("tbody");
  main.append(el("h2", { text: "Device Defender: active violations" }),
    el("div", { class: "table" }, el("table", { id: "violations" },
      el("thead", {}, el("tr", {}, ["Thing", "Security profile", "Behavior", "Last value", "Since"].map((h) => el("th", { text: h })))), body)));
  return poll(async () => {
    try {
      const v = await api("violations");
      body.replaceChildren(...v.map((x) => el("tr", {},
        el("td", { text: x.thingName }), el("td", { text: x.securityProfileName }),
        el("td", { text: x.behavior.name + (x.behavior.metric ? " (" + x.behavior.metric + ")" : "") }),
        el("td", { text: JSON.stringify(x.lastViolationValue) }), el("td", { text: when(x.violationStartTime) }))));
      if (!v.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No active violations." })));
    } catch (e) { status("violations: " + e.message, true); }
  }, 5000);
}

// ---- rules ----
function rulesPage(main) {
  const head = el("p", { class: "muted" });
  const list = el("div", { id: "rules" });
  main.append(el("h2", { text: "Topic rules" }), head, list);
  return poll(async () => {
    try {
      const r = await api("rules");
      head.replaceChildren("engine: " + r.received + " messages received, " + r.dropped + " dropped (queue " + r.queued + "/" + r.queueSize + ")");
      list.replaceChildren(...r.rules.map((x) => el("section", { class: "card", "data-rule": x.ruleName },
        el("h3", {}, x.ruleName, " ", el("span", { class: "state " + (x.ruleDisabled ? "disconnected" : "connected"), text: x.ruleDisabled ? "disabled" : "enabled" })),
        el("pre", { text: x.sql }),
        el("p", { class: "muted", text: "actions: " + x.actionKinds.join("; ") }),
        table(["evaluated", "matched", "SQL errors", "actions ok", "actions failed", "error actions", "dropped"], [el("tr", {},
          [x.metrics.evaluated, x.metrics.matched, x.metrics.sqlErrors, x.metrics.actionsSucceeded, x.metrics.actionsFailed,
            x.metrics.errorActionsSucceeded + " ok / " + x.metrics.errorActionsFailed + " failed", x.metrics.dropped].map((n) => el("td", { class: "counter", text: String(n || 0) })))]),
        x.metrics.lastFailure ? el("p", { class: "error", text: "last failure: " + x.metrics.lastFailure }) : null)));
      if (!r.rules.length) list.append(el("p", { class: "muted", text: "No rules. aws iot create-topic-rule makes one." }));
    } catch (e) { status("rules: " + e.message, true); }
  }, 3000);
}

// ---- routing ----
function route() {
  if (current) { current(); current = null; }
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const parts = path.split("/");
  const page = parts[0] || "fleet";
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page || (page === "thing" && a.dataset.page === "fleet"));
  const main = document.getElementById("main");
  main.replaceChildren();
  status("");
  switch (page) {
    case "thing": current = thingPage(main, decodeURIComponent(parts.slice(1).join("/"))); break;
    case "messages": current = messagesPage(main, params); break;
    case "jobs": current = jobsPage(main); break;
    case "defender": current = defenderPage(main); break;
    case "rules": current = rulesPage(main); break;
    default: current = fleetPage(main);
  }
}

window.addEventListener("hashchange", route);
route();
