// tools/bench-dashboard's browser side: node bench.mjs URL TOKEN N, prints JSON.
import { launch } from './lib.js';

const [url, token, n] = process.argv.slice(2);
const N = Number(n) || 7;

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], worst: s[s.length - 1] };
}

async function fcp(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const done = () => {
      const e = performance.getEntriesByName('first-contentful-paint')[0];
      if (e) resolve(e.startTime);
      else setTimeout(done, 20);
    };
    done();
  }));
}

const browser = await launch();
const out = { signinFcp: [], lastStatic: [], fcp: [], fmp: [], staticBytes: [], apiBytes: [], totalBytes: [] };
let files = [];
for (let i = 0; i < N; i++) {
  // The sign-in page: a new session without a token.
  let ctx = await browser.newContext();
  let page = await ctx.newPage();
  await page.goto(url);
  await page.getByLabel('API token').waitFor();
  out.signinFcp.push(await fcp(page));
  await ctx.close();

  // The overview, the token already in the session.
  ctx = await browser.newContext();
  await ctx.addInitScript((t) => sessionStorage.setItem('norn.token', t), token);
  page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = new Map();
  let stat = 0;
  let apiB = 0;
  const names = [];
  cdp.on('Network.responseReceived', (e) => urls.set(e.requestId, e.response.url));
  cdp.on('Network.loadingFinished', (e) => {
    const u = new URL(urls.get(e.requestId) || url);
    if (u.pathname.startsWith('/api/')) apiB += e.encodedDataLength;
    else {
      stat += e.encodedDataLength;
      names.push(u.pathname);
    }
  });
  await page.goto(url);
  await page.locator('main[data-loaded="true"]').waitFor();
  const fmp = await page.evaluate(() => new Promise((resolve) => {
    const done = () => {
      const e = performance.getEntriesByName('norn-apps-rendered')[0];
      if (e) resolve(e.startTime);
      else setTimeout(done, 20);
    };
    done();
  }));
  out.fcp.push(await fcp(page));
  // When the last static file had arrived: what nornd and loopback take.
  out.lastStatic.push(await page.evaluate(() => Math.max(
    performance.getEntriesByType('navigation')[0].responseEnd,
    ...performance.getEntriesByType('resource')
      .filter((e) => !/^\/(api\/|favicon)/.test(new URL(e.name).pathname)) // the icon comes after the page
      .map((e) => e.responseEnd))));
  out.fmp.push(fmp);
  await page.waitForLoadState('networkidle');
  out.staticBytes.push(stat);
  out.apiBytes.push(apiB);
  out.totalBytes.push(stat + apiB);
  files = names;
  await ctx.close();
}
const result = { browser: browser.version(), files };
for (const [k, v] of Object.entries(out)) result[k] = stats(v);
await browser.close();
process.stdout.write(JSON.stringify(result) + '\n');
