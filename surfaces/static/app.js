"use strict";
// The observer's dashboard: one live update a second over server-sent events (read with fetch, so a token
// can go in the Authorization header), control forms posting JSON to /api/control/*.

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("observer-token") || "";

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows) {
  const body = $(id);
  body.replaceChildren(...rows);
}

function hhmmss(iso) {
  if (!iso) return "";
  const t = iso.indexOf("T");
  return t >= 0 ? iso.slice(t + 1, t + 9) : iso;
}

function polyline(points, width, height) {
  const svgNS = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(svgNS, "polyline");
  if (points.length > 1) {
    const lo = Math.min(...points), hi = Math.max(...points);
    const span = hi - lo || 1;
    const step = width / (points.length - 1);
    line.setAttribute("points", points.map((v, i) =>
      (i * step).toFixed(1) + "," + (height - 2 - ((v - lo) / span) * (height - 4)).toFixed(1)).join(" "));
  }
  return line;
}

function sparkline(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 90 22");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  svg.appendChild(polyline(points, 90, 22));
  return svg;
}

function chart(id, series) {
  $(id).replaceChildren(polyline(series.map((p) => p[1]), 300, 80));
  $(id).setAttribute("data-points", String(series.length));
}

function render(u) {
  const s = u.status;
  $("phase").textContent = s.phase;
  $("clock").textContent = s.now.replace("T", " ").slice(0, 19) + " KST";
  $("next").textContent = s.next.what + " " + hhmmss(s.next.at).slice(0, 5);
  $("tps").textContent = s.ticks_per_second;
  $("trackb-state").textContent = s.track_b_paused ? "Track B is paused" : "";

  $("accounts").replaceChildren(...s.accounts.map((a) => {
    const card = el("div", null, "card");
    card.appendChild(el("b", a.account));
    const conn = el("div", a.connection, a.connection === "connected" ? "conn-connected" : "conn-bad");
    card.appendChild(conn);
    card.appendChild(el("div", "slots " + a.slots_used + " / " + a.capacity + " · ticks " + a.ticks));
    const r = a.registrations;
    card.appendChild(el("div", "registrations " + r.trades + " trades · " + r.books + " books · " + r.program
                        + " program"));
    const bar = el("div", null, "bar"), fillBar = el("div");
    fillBar.style.width = (a.capacity ? Math.round(100 * a.slots_used / a.capacity) : 0) + "%";
    bar.appendChild(fillBar);
    card.appendChild(bar);
    return card;
  }));

  const slotRows = [];
  let used = 0;
  for (const account of u.slots.accounts) {
    for (const slot of account.slots) {
      used += 1;
      const sym = el("span", slot.symbol);
      const cell = el("span");
      cell.appendChild(sym);
      if (slot.pinned) cell.appendChild(el("span", "pinned", "pin"));
      const tr = row([account.account, cell, slot.name, slot.venue, slot.score, slot.trigger || "",
        hhmmss(slot.since), slot.ticks_per_second, slot.last_price === null ? "" : slot.last_price.toLocaleString(),
        sparkline(slot.sparkline)]);
      tr.dataset.symbol = slot.symbol;
      if (slot.pinned) tr.dataset.pinned = "true";
      slotRows.push(tr);
    }
  }
  fill("slots-body", slotRows);
  $("slots-count").textContent = used + " slotted" + (u.slots.pinned.length ? ", pinned: " + u.slots.pinned.join(" ") : "");
  $("slots-body").dataset.pinned = u.slots.pinned.join(" ");

  fill("candidates-body", u.candidates.map((c) => row([c.symbol, c.name, c.score, c.trigger])));
  fill("overflow-body", u.overflow.map((o) => row([o.symbol, o.name, o.reason])));
  chart("tick-chart", u.charts.ticks);
  chart("rest-chart", u.charts.rest);

  $("recent-triggers").replaceChildren(...u.alerts.recent_triggers.slice().reverse().map((t) => el("li", t)));
  $("recent-alerts").replaceChildren(...u.alerts.recent.slice(-15).reverse().map((a) =>
    el("li", hhmmss(a.at || a.sent_at || "") + " " + (a.key || "") + " " + (a.text || "").slice(0, 120))));
  $("alert-counts").textContent = "sent " + u.alerts.sent + ", suppressed " + u.alerts.suppressed;
  const g = u.gaps;
  $("gap-counts").textContent = "detected " + g.detected + ", recovered " + g.recovered + ", marked " + g.marked;
  const open = [];
  for (const [account, symbols] of Object.entries(g.open)) for (const sym of symbols) open.push(el("li", account + " open: " + sym));
  $("recent-gaps").replaceChildren(...open);

  const h = u.health;
  $("health").textContent = h.alive ? (h.ready ? "alive, ready" : "alive, not ready") : "NOT ALIVE";
  $("health").className = "badge " + (h.alive ? "ok" : "bad");
  $("health").title = h.reasons.join("\n");
  fill("actors-body", h.actors.map((a) => row([a.id, a.running ? "yes" : "NO", a.restarts])));
  $("schedule").replaceChildren(...s.schedule.map((b) => {
    const li = el("li", hhmmss(b.at).slice(0, 5) + " " + b.what);
    if (b.at === s.next.at) li.className = "pin";
    return li;
  }));
  document.body.dataset.version = String((Number(document.body.dataset.version) || 0) + 1);
}

async function stream() {
  for (;;) {
    try {
      const response = await fetch("/api/events", { headers: headers() });
      if (response.status === 401) { askToken(); return; }
      $("live").textContent = "live"; $("live").className = "badge ok";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) render(JSON.parse(data));
        }
      }
    } catch (error) { /* reconnect below */ }
    $("live").textContent = "reconnecting"; $("live").className = "badge stale";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function askToken() {
  $("token-box").hidden = false; $("token-box").open = true;
  $("live").textContent = "token needed"; $("live").className = "badge bad";
}

async function control(command, body) {
  const result = $("control-result");
  result.textContent = "…"; result.className = "result";
  try {
    const response = await fetch("/api/control/" + command, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.ok) { result.textContent = answer.done; result.className = "result ok"; }
    else { result.textContent = answer.error || ("refused (" + response.status + ")"); result.className = "result error"; }
    if (response.status === 401) askToken();
  } catch (error) {
    result.textContent = "the observer cannot be reached"; result.className = "result error";
  }
}

function symbolBody() { return { symbol: $("control-symbol").value.trim() }; }

document.addEventListener("DOMContentLoaded", () => {
  $("symbol-form").addEventListener("submit", (e) => { e.preventDefault(); control("pin", symbolBody()); });
  $("unpin-button").addEventListener("click", () => control("unpin", symbolBody()));
  $("trigger-button").addEventListener("click", () =>
    control("trigger", Object.assign(symbolBody(), { ttl_seconds: Number($("control-ttl").value) })));
  $("picks-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const picks = $("picks").value.split(/[\s,]+/).filter(Boolean).map((text) => {
      const [symbol, score] = text.split(":");
      return score === undefined ? symbol : { symbol: symbol, score: Number(score) };
    });
    control("picks", { picks: picks, when: $("picks-scheduled").checked ? "scheduled" : "now" });
  });
  $("scan-button").addEventListener("click", () => control("scan", {}));
  $("pause-button").addEventListener("click", () => control("trackb", { paused: true }));
  $("resume-button").addEventListener("click", () => control("trackb", { paused: false }));
  $("token-save").addEventListener("click", () => {
    token = $("token").value; sessionStorage.setItem("observer-token", token);
    $("token-box").hidden = true; stream();
  });
  stream();
});
