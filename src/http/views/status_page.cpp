// status_page_html: the page at /_datapump/. Self-contained (no external resources); it polls
// api/streams and api/status (relative: the page lives under the prefix) once a second and posts
// pause/resume/seek to api/streams/ID/... Rows are updated in place, so a seek offset being typed
// survives the refresh. Everything from the API reaches the DOM escaped (esc) or as textContent.
// With an admin token, the page is opened as /_datapump/?token=TOKEN and sends the token as
// "Authorization: Bearer TOKEN" on every API call (the API takes only the header).
// Selectors that tests and users rely on: #streams (tbody), tr[data-stream-id], button.pause,
// button.resume, input.offset + button.seek (each with data-stream-id), #cache, #server, #error.
#include "datapump/http/views.hpp"

namespace datapump::http {
namespace {

constexpr std::string_view page = R"page(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>datapump</title>
<style>
:root { color-scheme: light dark; --line: #8884; --dim: #888; --accent: #2b7de9; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; }
h1 { font-size: 1.25rem; margin: 0 0 1rem; }
h1 small { color: var(--dim); font-weight: normal; font-size: .8rem; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
.panels { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1.2rem; }
.panel { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .9rem; min-width: 17rem; }
dl { display: grid; grid-template-columns: auto auto; gap: .15rem 1.2rem; margin: 0; }
dt { color: var(--dim); }
dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { font-weight: 600; color: var(--dim); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.file { max-width: 22rem; overflow: hidden; text-overflow: ellipsis; }
.bar { display: inline-block; width: 7rem; height: .5rem; margin-right: .4rem; vertical-align: middle;
       background: var(--line); border-radius: 3px; overflow: hidden; }
.bar > span { display: block; height: 100%; width: 0; background: var(--accent); }
.state.paused { color: #c77d00; } .state.waiting { color: var(--dim); } .state.ending { color: #888; }
button { font: inherit; padding: .05rem .5rem; }
input.offset { font: inherit; width: 7rem; }
tr.empty td { color: var(--dim); text-align: center; }
#error, #notice { display: none; padding: .5rem .8rem; border-radius: 6px; margin-bottom: 1rem; }
#error { background: #fdd; color: #700; border: 1px solid #d99; }
#notice { background: #ffe9c2; color: #5a3b00; border: 1px solid #e0b060; }
#error.shown, #notice.shown { display: block; }
</style>
</head>
<body>
<h1>datapump <small id="version"></small></h1>
<div id="error" role="alert"></div>
<div id="notice" role="status"></div>
<div class="panels">
  <section class="panel"><h2>Server</h2><dl id="server"></dl></section>
  <section class="panel"><h2>Cache</h2><dl id="cache"></dl></section>
</div>
<h2>Live streams</h2>
<table>
  <thead><tr><th>ID</th><th>Client</th><th>File</th><th>State</th><th>Position</th><th>Rate</th>
  <th>Sent</th><th>Speed</th><th>Control</th></tr></thead>
  <tbody id="streams"><tr class="empty"><td colspan="9">Loading…</td></tr></tbody>
</table>
<script>
'use strict';
const $ = (selector) => document.querySelector(selector);
const known = new Map();  // stream id (string) -> last stream object, for percent seeks
let noticeTimer = null;
// The admin token the page was opened with (?token=), for the API calls; none: no header.
const token = new URLSearchParams(location.search).get('token');
const auth = token ? { Authorization: `Bearer ${token}` } : {};

function esc(value) {
  return String(value).replace(/[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function si(n, unit) {
  n = Number(n) || 0;
  const prefixes = ['', 'k', 'M', 'G', 'T', 'P'];
  let i = 0;
  while (n >= 1000 && i < prefixes.length - 1) { n /= 1000; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + prefixes[i] + unit;
}
function rate(r) { return r > 0 ? si(r, 'B/s') : 'unpaced'; }
function count(n) { return (Number(n) || 0).toLocaleString('en-US'); }
function duration(ms) {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
}
function show(id, text) { const el = $(id); el.textContent = text; el.classList.add('shown'); }
function hide(id) { $(id).classList.remove('shown'); }
function notice(text) {
  show('#notice', text);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => hide('#notice'), 6000);
}
function panel(selector, rows) {
  $(selector).innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
}

function newRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.streamId = id;
  const sid = esc(id);
  tr.innerHTML = `<td class="num">${sid}</td><td class="client"></td><td class="file"></td>` +
    '<td class="state"></td><td class="position"><span class="bar"><span></span></span><span class="at"></span></td>' +
    '<td class="num rate"></td><td class="num sent"></td><td class="num speed"></td><td>' +
    `<button class="pause" data-stream-id="${sid}">Pause</button> ` +
    `<button class="resume" data-stream-id="${sid}">Resume</button> ` +
    `<input class="offset" data-stream-id="${sid}" placeholder="bytes or %" aria-label="seek offset"> ` +
    `<button class="seek" data-stream-id="${sid}">Seek</button></td>`;
  return tr;
}
function setText(tr, selector, text) { tr.querySelector(selector).textContent = text; }

function renderStreams(list) {
  const body = $('#streams');
  const seen = new Set();
  for (const s of list) {
    const id = String(s.id);
    seen.add(id);
    known.set(id, s);
    let tr = body.querySelector(`tr[data-stream-id="${CSS.escape(id)}"]`);
    if (!tr) { tr = newRow(id); body.appendChild(tr); }
    const span = s.end - s.start;
    const pct = span > 0 ? Math.max(0, Math.min(100, (s.position - s.start) * 100 / span)) : 0;
    setText(tr, '.client', s.client);
    setText(tr, '.file', s.file);
    tr.querySelector('.file').title = s.file;
    setText(tr, '.state', s.state);
    tr.querySelector('.state').className = 'state ' + s.state;
    tr.querySelector('.bar > span').style.width = pct.toFixed(1) + '%';
    setText(tr, '.at', `${si(s.position, 'B')} (${pct.toFixed(1)}%)`);
    setText(tr, '.rate', rate(s.rate));
    setText(tr, '.sent', si(s.bytes_sent, 'B'));
    setText(tr, '.speed', s.speed + '×');
  }
  for (const tr of Array.from(body.querySelectorAll('tr[data-stream-id]'))) {
    if (!seen.has(tr.dataset.streamId)) { known.delete(tr.dataset.streamId); tr.remove(); }
  }
  const empty = body.querySelector('tr.empty');
  if (list.length === 0 && !empty) {
    body.insertAdjacentHTML('beforeend', '<tr class="empty"><td colspan="9">No live streams</td></tr>');
  } else if (empty) {
    if (list.length > 0) { empty.remove(); } else { empty.firstChild.textContent = 'No live streams'; }
  }
}

function renderStatus(st) {
  $('#version').textContent = st.version ? 'version ' + st.version : '';
  panel('#server', [
    ['Uptime', duration(st.uptime_ms)],
    ['Connections', count(st.connections)],
    ['Active streams', count(st.active_streams)],
    ['Provider', st.provider],
    ['Send path', st.send_path],
    ['Admission capacity', st.capacity > 0 ? rate(st.capacity) : 'no limit'],
    ['Reserved', st.reserved > 0 ? rate(st.reserved) : '0 B/s'],
    ['Refusals', count(st.admission_refusals)],
    ['Paced on rt', count((st.rt || {}).connections)],
    ['rt refusals', count((st.rt || {}).refusals)],
    ['rt deadline misses', count((st.rt || {}).deadline_misses)],
    ['Bytes sent', si(st.bytes_sent, 'B')],
  ]);
  const c = st.cache || {};
  const lookups = (c.hits || 0) + (c.misses || 0);
  panel('#cache', [
    ['Buffers', `${count(c.buffers)} × ${count(Math.round((c.buffer_size || 0) / 1024))} KiB` +
                (c.huge_page_bytes ? `, ${count(Math.round(c.huge_page_bytes / 1048576))} MiB in huge pages` : '')],
    ['Hits', count(c.hits)],
    ['Misses', count(c.misses)],
    ['Hit ratio', lookups > 0 ? (c.hits * 100 / lookups).toFixed(1) + ' %' : '–'],
    ['Loans outstanding', count(c.loans_out)],
    ['Evictions', count(c.evictions)],
  ]);
}

async function refresh() {
  try {
    const [streams, status] = await Promise.all(
      ['api/streams', 'api/status'].map((url) => fetch(url, { cache: 'no-store', headers: auth })));
    for (const r of [streams, status]) {
      if (!r.ok) { throw new Error(`${r.url}: HTTP ${r.status}`); }
    }
    const list = (await streams.json()).streams || [];
    renderStreams(list);
    renderStatus(await status.json());
    hide('#error');
  } catch (e) {
    show('#error', `Cannot reach the datapump API (${e.message}). Retrying every second…`);
  }
}

// "1048576" (bytes) or "50%" (of the stream's range); null when the text is neither.
function offsetFor(id, text) {
  text = text.trim();
  if (/^\d+$/.test(text)) { return text; }
  const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
  const s = known.get(id);
  if (!m || !s || Number(m[1]) > 100) { return null; }
  return String(Math.floor(s.start + (s.end - s.start) * Number(m[1]) / 100));
}

async function control(button) {
  const id = button.dataset.streamId;
  const action = ['pause', 'resume', 'seek'].find((a) => button.classList.contains(a));
  let query = '';
  if (action === 'seek') {
    const input = button.parentElement.querySelector('input.offset');
    const offset = offsetFor(id, input.value);
    if (offset === null) { notice('Seek: give an offset in bytes (1048576) or a percentage (50%).'); return; }
    query = '?offset=' + offset;
  }
  try {
    const r = await fetch(`api/streams/${encodeURIComponent(id)}/${action}${query}`, { method: 'POST', headers: auth });
    const reply = await r.json().catch(() => ({}));
    if (!r.ok || reply.ok === false) { notice(`${action} ${id}: ${reply.error || 'HTTP ' + r.status}`); }
  } catch (e) {
    notice(`${action} ${id}: ${e.message}`);
  }
  await refresh();
}

$('#streams').addEventListener('click', (ev) => {
  const button = ev.target.closest('button[data-stream-id]');
  if (button) { control(button); }
});
$('#streams').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && ev.target.matches('input.offset')) {
    control(ev.target.parentElement.querySelector('button.seek'));
  }
});

function poll() { refresh().finally(() => setTimeout(poll, 1000)); }
poll();
</script>
</body>
</html>
)page";

}  // namespace

std::string_view status_page_html() {
    return page;
}

}  // namespace datapump::http
