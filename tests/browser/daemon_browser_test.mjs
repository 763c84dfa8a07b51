// A real browser against datapumpd (or any server of the same folder): Debian's Chromium driven
// by playwright-core, which downloads no browser of its own.
//
//   node daemon_browser_test.mjs --base http://127.0.0.1:PORT --part video
//   node daemon_browser_test.mjs --base http://127.0.0.1:PORT --admin-base http://127.0.0.1:ADMIN_PORT \
//        --part status --file big.bin [--token TOKEN]
//
// video:  /index.html holds <video src=clip muted>: play() must advance past 1 s; a seek to 4 s
//         must land (>= 3.9) and keep playing (> 4.5); the element reports no error.
// status: a paced download of FILE is running (the caller started it); /_datapump/ must list it in
//         a row tr[data-stream-id] naming FILE, and its button.pause must pause it (checked via the
//         JSON API: state "paused").
// Exit 0 when every step passed, 1 otherwise; the whole run is bounded (50 s, inside the driver's
// 60 s per check).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const base = args.base;
const part = args.part ?? 'video';
// The status page and its API are on the daemon's admin listener (--admin-listen), not on --base.
const adminBase = args['admin-base'] ?? base;
// --token: the daemon runs with --admin-token; the page is opened with ?token= and the checks'
// own API calls send it as a Bearer header.
const token = args.token;
const auth = token ? { Authorization: `Bearer ${token}` } : {};
if (!base) {
  console.error('usage: daemon_browser_test.mjs --base URL --part video|status [--file NAME]');
  process.exit(2);
}

const watchdog = setTimeout(() => { console.error('FAIL: the browser test did not finish within 50 s'); process.exit(1); }, 50_000);

const fail = (msg) => { throw new Error(msg); };

async function pollUntil(what, fn, timeoutMs, stepMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last.ok) return last;
    if (Date.now() > deadline) fail(`${what} (last seen: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

async function videoPart(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/index.html`, { timeout: 15_000 });
  const state = () => page.$eval('video', (v) => ({
    t: v.currentTime, paused: v.paused, ready: v.readyState, src: v.currentSrc,
    error: v.error ? `${v.error.code} ${v.error.message}` : null,
  }));
  const noError = async () => { const s = await state(); if (s.error) fail(`<video> error: ${s.error} (${s.src})`); return s; };

  await page.$eval('video', (v) => v.play());
  await pollUntil('playback did not pass 1.0 s within 10 s', async () => {
    const s = await noError(); return { ok: s.t > 1.0, ...s };
  }, 10_000);
  console.log('ok: playing, currentTime > 1.0');

  await page.$eval('video', (v) => { v.currentTime = 4.0; });
  await pollUntil('the seek to 4.0 s did not land (>= 3.9) within 10 s', async () => {
    const s = await noError(); return { ok: s.t >= 3.9, ...s };
  }, 10_000);
  console.log('ok: seek to 4.0 landed');
  await pollUntil('after the seek, playback did not pass 4.5 s within 10 s', async () => {
    const s = await noError(); return { ok: s.t > 4.5 && !s.paused, ...s };
  }, 10_000);
  console.log('ok: playing on after the seek (> 4.5 s)');
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
}

async function streamsJson() {
  const res = await fetch(`${adminBase}/_datapump/api/streams`, { headers: auth, signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) fail(`GET /_datapump/api/streams: ${res.status}`);
  return (await res.json()).streams;
}

async function statusPart(page) {
  const file = args.file ?? 'big.bin';
  await page.goto(`${adminBase}/_datapump/${token ? `?token=${encodeURIComponent(token)}` : ''}`, { timeout: 15_000 });
  const row = page.locator('tr[data-stream-id]', { hasText: file }).first();
  await row.waitFor({ state: 'visible', timeout: 10_000 })
    .catch(() => fail(`the status page shows no row tr[data-stream-id] naming ${file} within 10 s`));
  const id = await row.getAttribute('data-stream-id');
  console.log(`ok: status page lists stream ${id} (${file})`);
  const listed = (await streamsJson()).find((s) => String(s.id) === id);
  if (!listed) fail(`stream ${id} of the status page is not in /_datapump/api/streams`);

  const button = page.locator(`button.pause[data-stream-id="${id}"]`);
  await button.click({ timeout: 10_000 }).catch((e) => fail(`cannot click button.pause[data-stream-id="${id}"]: ${e.message}`));
  await pollUntil(`stream ${id} is not "paused" in the JSON API 5 s after the click`, async () => {
    const s = (await streamsJson()).find((x) => String(x.id) === id);
    return { ok: s?.state === 'paused', state: s?.state };
  }, 5_000);
  console.log(`ok: the pause button paused stream ${id}`);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'datapump-chromium-'));
let context;
let code = 1;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15_000);
  if (part === 'video') await videoPart(page);
  else if (part === 'status') await statusPart(page);
  else fail(`unknown --part ${part}`);
  console.log(`PASS: browser ${part}`);
  code = 0;
} catch (e) {
  console.error(`FAIL: browser ${part}: ${e.message}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.exit(code);
