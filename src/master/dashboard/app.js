// The master's dashboard: polls /api/v1/status (segments, clients, HA) and
// /metrics (Prometheus text: counters and latency histograms) every second,
// and draws rates and latencies as line charts on canvases. No library, no
// network access beyond this master's admin port.
"use strict";

const POLL_MS = 1000, POINTS = 120;
const series = {};           // chart id -> array of [values...] per sample
let prev = null;             // previous metrics sample {t, m}

function $(id) { return document.getElementById(id); }

function human(n) {
  const u = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(2) : String(n)) + " " + u[i];
}

function ago(ms) {
  if (ms < 1000) return ms + " ms";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

// Prometheus text -> {name: [{labels: {...}, value}]}
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const kv of m[3].split(/,(?=[a-zA-Z_]+=)/)) {
      const eq = kv.indexOf("=");
      labels[kv.slice(0, eq)] = kv.slice(eq + 2, -1);
    }
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

function metric(m, name, labels) {
  for (const s of m[name] || [])
    if (!labels || Object.keys(labels).every(k => s.labels[k] === labels[k])) return s.value;
  return 0;
}

// Cumulative buckets of one method's histogram: [[le, count], ...] sorted.
function buckets(m, method) {
  return (m.master_rpc_duration_seconds_bucket || [])
    .filter(s => s.labels.method === method)
    .map(s => [s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value])
    .sort((a, b) => a[0] - b[0]);
}

// Quantile q (0..1) in microseconds of the requests between two samples
// (linear inside the bucket); null when there were none.
function quantile(cur, old, q) {
  const d = cur.map((b, i) => [b[0], b[1] - (old[i] ? old[i][1] : 0)]);
  const total = d.length ? d[d.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lo = 0, prevCount = 0;
  for (const [le, c] of d) {
    if (c >= rank) {
      const hi = le === Infinity ? lo * 2 : le;
      const f = c > prevCount ? (rank - prevCount) / (c - prevCount) : 1;
      return (lo + (hi - lo) * f) * 1e6;
    }
    lo = le; prevCount = c;
  }
  return lo * 1e6;
}

function push(id, values) {
  const s = series[id] = series[id] || [];
  s.push(values);
  if (s.length > POINTS) s.shift();
  const last = values.map(v => v == null ? "-" : (Math.round(v * 10) / 10).toString());
  $(id + "-value").textContent = last.join(" / ");
  $(id).dataset.last = last.join(",");
  draw(id);
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a"];

function draw(id) {
  const c = $(id), g = c.getContext("2d"), s = series[id];
  const w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const v of s) for (const x of v) if (x != null && x > max) max = x;
  max = max > 0 ? max * 1.1 : 1;
  g.strokeStyle = "#e5e7eb"; g.lineWidth = 1;
  for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, h * i / 4); g.lineTo(w, h * i / 4); g.stroke(); }
  g.fillStyle = "#6b7280"; g.font = "10px sans-serif"; g.fillText(String(Math.round(max)), 2, 10);
  const n = s[0] ? s[0].length : 0;
  for (let k = 0; k < n; k++) {
    g.strokeStyle = COLORS[k % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
    let started = false;
    s.forEach((v, i) => {
      if (v[k] == null) return;
      const x = w - (s.length - 1 - i) * (w / (POINTS - 1)), y = h - (v[k] / max) * (h - 12);
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    });
    g.stroke();
  }
}

function row(tbody, cells, key) {
  const tr = document.createElement("tr");
  tr.dataset.key = key;
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}

function bar(pct) {
  const b = document.createElement("div"), f = document.createElement("div");
  b.className = "bar" + (pct > 90 ? " hot" : "");
  f.style.width = Math.min(100, pct).toFixed(1) + "%";
  b.title = pct.toFixed(1) + " %";
  b.appendChild(f);
  return b;
}

function showStatus(st) {
  $("version").textContent = st.version;
  const role = $("role");
  role.textContent = st.role;
  role.className = "badge " + st.role;
  $("ha-state").textContent = st.ha_state + (st.ha_enabled ? "" : " (no HA)");
  $("leader").textContent = st.leader_address || (st.ha_enabled ? "unknown" : "this master");
  $("uptime").textContent = duration(st.uptime_seconds);
  $("keys").textContent = st.keys;
  $("clients-alive").textContent = st.clients_alive;
  $("segments-count").textContent = st.segments.length;
  const pct = st.capacity_bytes ? 100 * st.allocated_bytes / st.capacity_bytes : 0;
  $("usage").textContent = human(st.allocated_bytes) + " / " + human(st.capacity_bytes);
  $("usage-bar").style.width = pct.toFixed(1) + "%";
  const segs = $("segments").tBodies[0], perClient = {};
  segs.textContent = "";
  for (const s of st.segments) {
    perClient[s.client_id] = (perClient[s.client_id] || 0) + 1;
    const p = s.capacity_bytes ? 100 * s.used_bytes / s.capacity_bytes : 0;
    row(segs, [s.name, s.te_endpoint, s.client_id, bar(p), human(s.used_bytes),
               human(s.capacity_bytes), s.draining ? "draining" : "ok"], s.name);
  }
  const cl = $("clients").tBodies[0];
  cl.textContent = "";
  for (const c of st.clients)
    row(cl, [c.client_id, ago(c.heartbeat_age_ms), ago(c.ttl_left_ms), c.alive ? "alive" : "remounting",
             String(perClient[c.client_id] || 0)], c.client_id);
}

function showMetrics(m, t) {
  const puts = metric(m, "master_put_start_requests_total") + metric(m, "master_batch_put_start_items_total") +
    metric(m, "master_batch_upsert_start_items_total") + metric(m, "master_upsert_start_requests_total");
  const gets = metric(m, "master_get_replica_list_requests_total") +
    metric(m, "master_batch_get_replica_list_items_total");
  const getFail = metric(m, "master_get_replica_list_failures_total") +
    metric(m, "master_batch_get_replica_list_failed_items_total");
  const evicted = metric(m, "master_evicted_keys_total");
  $("evicted").textContent = evicted;
  $("hit-ratio").textContent = gets ? (100 * (gets - getFail) / gets).toFixed(1) + " %" : "-";
  const cur = { t, puts, gets, evicted, put: buckets(m, "put_start"), get: buckets(m, "get_replica_list") };
  push("chart-keys", [metric(m, "master_keys")]);
  if (prev) {
    const dt = Math.max(0.001, (t - prev.t) / 1000);
    push("chart-put", [(puts - prev.puts) / dt]);
    push("chart-get", [(gets - prev.gets) / dt]);
    push("chart-evict", [(evicted - prev.evicted) / dt]);
    push("chart-put-lat", [quantile(cur.put, prev.put, 0.5), quantile(cur.put, prev.put, 0.99)]);
    push("chart-get-lat", [quantile(cur.get, prev.get, 0.5), quantile(cur.get, prev.get, 0.99)]);
  }
  prev = cur;
}

async function poll() {
  try {
    const [s, m] = await Promise.all([fetch("/api/v1/status"), fetch("/metrics")]);
    if (!s.ok) throw new Error("/api/v1/status: HTTP " + s.status);
    if (!m.ok) throw new Error("/metrics: HTTP " + m.status);
    showStatus(await s.json());
    showMetrics(parseMetrics(await m.text()), Date.now());
    $("error").hidden = true;
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "master unreachable: " + e.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();
