// The dashboard in a real browser: `ec2-scheduler serve --demo` driven through
// headless Chromium with playwright-core.
//
// Environment:
//   EC2S_BIN      the ec2-scheduler binary (required)
//   SCREENSHOTS   folder for the screenshots at 1,280 px (default: ./screenshots)
//   CHROMIUM      the browser (default: /usr/bin/chromium)
//
// Prints one line per test and a closing `browser: N passed, M failed`; exits 1 when
// a test failed.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.EC2S_BIN;
if (!bin) {
  console.error("EC2S_BIN must name the ec2-scheduler binary");
  process.exit(2);
}
const shots = process.env.SCREENSHOTS || "screenshots";
mkdirSync(shots, { recursive: true });

// A Saturday: the example workload's office hours fire nothing while the tests run,
// so the runs the tests begin are the only ones on it.
const START = "2026-12-05T09:00:00Z";

function startDemo() {
  const child = spawn(
    bin,
    ["serve", "--demo", "--listen", "127.0.0.1:0", "--start", START, "--log-level", "warning"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve --demo did not start:\n${out}\n${err}`)), 30000);
    child.on("exit", (code) => reject(new Error(`serve --demo exited (${code}):\n${out}\n${err}`)));
    child.stdout.on("data", (d) => {
      out += d;
      const url = out.match(/Dashboard: (http:\/\/\S+)/);
      const op = out.match(/Operator token: (\S+)/);
      const viewer = out.match(/Viewer token: +(\S+)/);
      if (url && op && viewer) {
        clearTimeout(timer);
        resolve({ child, base: url[1].replace(/\/$/, ""), operator: op[1], viewer: viewer[1], log: () => err });
      }
    });
  });
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const results = [];
async function test(name, body) {
  const began = Date.now();
  try {
    await body();
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - began} ms)`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const demo = await startDemo();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

// Every page is watched for script errors and Content-Security-Policy violations.
const problems = [];
async function newPage(width = 1280, height = 900) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on("console", (m) => {
    // A refused sign-in answers 401 on purpose; anything else is a problem.
    if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e.message}`));
  return page;
}

async function signIn(page, token) {
  await page.goto(`${demo.base}/`);
  check(new URL(page.url()).pathname === "/signin", `not sent to sign in: ${page.url()}`);
  await page.fill("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
}

const operator = await newPage();
let runUrl = null;

await test("an invalid token is refused", async () => {
  const page = await newPage();
  await page.goto(`${demo.base}/`);
  await page.fill("#token", "ec2s_000000000000_" + "0".repeat(64));
  const [res] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(res.status() === 401, `status ${res.status()}`);
  check(new URL(page.url()).pathname === "/signin", `left the sign-in page: ${page.url()}`);
  const error = await page.textContent("#signin-error");
  check(/not valid/.test(error), `no error shown: ${error}`);
  const cookies = await page.context().cookies();
  check(!cookies.some((c) => c.name === "ec2s_session"), "a session cookie was set");
  // And the pages stay closed.
  await page.goto(`${demo.base}/workload/ExampleTestCase`);
  check(new URL(page.url()).pathname === "/signin", "a page opened without a session");
  await page.context().close();
});

await test("an operator signs in and sees the example workload with its three tiers", async () => {
  await signIn(operator, demo.operator);
  const cookie = (await operator.context().cookies()).find((c) => c.name === "ec2s_session");
  check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", `cookie ${JSON.stringify(cookie)}`);
  const row = operator.locator('tr[data-workload="ExampleTestCase"]');
  await row.waitFor();
  const tiers = await row.locator("ul.tiers li .tier").allTextContents();
  check(JSON.stringify(tiers) === JSON.stringify(["Role_DB", "Role_App", "Role_Web"]), `tiers ${tiers}`);
  check(await operator.locator('tr[data-workload="Analytics"]').count() === 1, "no second workload");
  // The counts are labelled, not only coloured.
  const counts = await row.locator(".chip").first().textContent();
  check(/running|stopped/.test(counts), `unlabelled count: ${counts}`);
  // The filter keeps what matches.
  await operator.fill("#q", "analytics");
  await Promise.all([operator.waitForNavigation(), operator.press("#q", "Enter")]);
  check(await operator.locator("tr[data-workload]").count() === 1, "the filter kept more than one");
  await operator.goto(`${demo.base}/`);
  await operator.screenshot({ path: join(shots, "workloads.png"), fullPage: true });
});

await test("the operator dry-runs a start with profileD and sees its plan", async () => {
  await operator.click('a[href="/workload/ExampleTestCase"]');
  await operator.locator("section.tier-block").first().waitFor();
  const order = await operator.locator("section.tier-block").evaluateAll((s) => s.map((e) => e.dataset.tier));
  check(JSON.stringify(order) === JSON.stringify(["Role_DB", "Role_App", "Role_Web"]), `order ${order}`);
  await operator.screenshot({ path: join(shots, "workload.png"), fullPage: true });
  await operator.selectOption("#profile", "profileD");
  await Promise.all([operator.waitForNavigation(), operator.click("#dry-start")]);
  const summary = await operator.textContent("#plan-summary");
  check(/start of ExampleTestCase with profile profileD/i.test(summary), `summary: ${summary}`);
  const planned = await operator.locator("#plan li.plan-tier").evaluateAll((l) => l.map((e) => e.dataset.tier));
  check(JSON.stringify(planned) === JSON.stringify(["Role_DB", "Role_App", "Role_Web"]), `plan tiers ${planned}`);
  check(/resize/.test(await operator.textContent("#plan")), "no resize in the plan");
  await operator.screenshot({ path: join(shots, "plan.png"), fullPage: true });
});

await test("the operator starts it with profileD and the timeline reaches success", async () => {
  await Promise.all([operator.waitForNavigation(), operator.click("#confirm")]);
  runUrl = operator.url();
  check(/\/run\//.test(runUrl), `not on a run page: ${runUrl}`);
  // A table the reader opens stays open while the page refreshes.
  await operator.click("#bars-table > summary");
  // The page follows the run by itself.
  await operator.waitForFunction(
    () => /succeeded/.test(document.querySelector("#run-status")?.textContent || ""),
    null,
    { timeout: 180000, polling: 500 },
  );
  const steps = await operator.locator("svg.timeline g.bar").evaluateAll((g) => g.map((e) => e.dataset.step));
  for (const s of ["resize", "start", "wait", "gate", "pause"]) {
    check(steps.includes(s), `no ${s} bar in ${steps}`);
  }
  const lanes = await operator.locator("svg.timeline > text").allTextContents();
  for (const t of ["Role_DB", "Role_App", "Role_Web"]) check(lanes.includes(t), `no lane ${t}`);
  check(await operator.locator("#cancel").count() === 0, "a finished run offers cancel");
  check(await operator.locator("#bars-table[open]").count() === 1, "the opened table was closed by a refresh");
  check(await operator.locator("#bars tbody tr").count() === steps.length, "the table does not list every bar");
  await operator.screenshot({ path: join(shots, "run.png"), fullPage: false });
  // The workload is now running with the profile's types.
  await operator.goto(`${demo.base}/workload/ExampleTestCase`);
  const text = await operator.textContent('section.tier-block[data-tier="Role_DB"]');
  check(/r4\.large/.test(text), "the database tier was not resized");
});

await test("the week schedule shows the holiday and the events", async () => {
  await operator.goto(`${demo.base}/schedule`);
  const block = operator.locator('section.week-block[data-workload="ExampleTestCase"]');
  await block.waitFor();
  check(/Demo holiday/.test(await block.locator(".holidays").textContent()), "no holiday listed");
  check(await block.locator("svg rect.holiday").count() === 1, "the holiday is not marked in the week");
  check(/Europe\/Berlin/.test(await block.locator("h2").textContent()), "not in the schedule's zone");
  // The viewer's own zone: the page's script offers it.
  const own = operator.locator("a[data-your-zone]");
  check(await own.isVisible(), "no link to the viewer's time zone");
  await operator.goto(`${demo.base}/schedule?tz=America/New_York`);
  check(/America\/New_York/.test(await operator.locator('section.week-block[data-workload="ExampleTestCase"] h2').textContent()), "not in the zone asked for");
  await operator.goto(`${demo.base}/schedule`);
  await operator.screenshot({ path: join(shots, "schedule.png"), fullPage: true });
  await operator.goto(`${demo.base}/savings`);
  check(await operator.locator("svg.savings-chart").count() >= 3, "no savings charts");
  check(await operator.locator("table.figures").count() >= 3, "no savings figures");
  await operator.screenshot({ path: join(shots, "savings.png"), fullPage: true });
});

await test("a viewer finds no action buttons, and actions are refused", async () => {
  const page = await newPage();
  await signIn(page, demo.viewer);
  await page.goto(`${demo.base}/workload/ExampleTestCase`);
  await page.locator("section.tier-block").first().waitFor();
  for (const sel of ["#start", "#stop", "#dry-start", "#dry-stop", "section.actions", 'form[action$="/run"]']) {
    check(await page.locator(sel).count() === 0, `a viewer sees ${sel}`);
  }
  if (runUrl) {
    await page.goto(runUrl);
    check(await page.locator("#cancel").count() === 0, "a viewer sees cancel");
    check(await page.locator("#confirm").count() === 0, "a viewer sees confirm");
  }
  const res = await page.context().request.post(`${demo.base}/workload/ExampleTestCase/run`, {
    form: { action: "stop" },
    maxRedirects: 0,
  });
  check(res.status() === 403, `a viewer's stop answered ${res.status()}`);
  await page.context().close();
});

await test("pages fit a phone-width screen and start with a skip link", async () => {
  const page = await newPage(390, 844);
  await signIn(page, demo.viewer);
  for (const path of ["/", "/workload/ExampleTestCase", "/schedule", "/savings"]) {
    await page.goto(`${demo.base}${path}`);
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 1, `${path} is ${over} px wider than the screen`);
  }
  await page.keyboard.press("Tab");
  const first = await page.evaluate(() => document.activeElement?.textContent);
  check(/Skip to the content/.test(first || ""), `the first stop is ${first}`);
  await page.context().close();
});

await test("no page had a script error or a Content-Security-Policy violation", async () => {
  check(problems.length === 0, problems.join("\n"));
});

await browser.close();
demo.child.kill("SIGTERM");

const passed = results.filter((r) => r[1]).length;
const failed = results.length - passed;
if (failed > 0) {
  console.log("serve --demo's log:\n" + demo.log().split("\n").slice(-40).join("\n"));
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
