#!/usr/bin/env node
// The browser driver of tests/browser.rs: bundles page.js (@moq/net) with esbuild in memory,
// starts headless Chromium once through playwright-core, runs each task of a job in its own
// page, and prints one JSON line: { chromium, moq_net, bundle_ms, pages: [report, ...] } (or { error }).
// It judges nothing; the Rust test compares the reports with what it expects.
//
// Usage: node run.mjs '<job JSON>'   job = { tasks: [task, ...], launch_timeout_ms }
// Publishing pages end their tracks (those not ending at once) on a line "end" on stdin, or
// at EOF; they hold their sessions open until every subscribing page of the job is done and
// stdin reaches EOF, so a subscriber outside the browser can finish reading first.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.MOQRING_CHROMIUM ?? "/usr/bin/chromium";
// A secure context without an HTTP server: page.route answers for this origin.
const ORIGIN = "http://localhost";
const MOQ_NET = JSON.parse(readFileSync(join(HERE, "node_modules/@moq/net/package.json"), "utf8")).version;

function fail(message) {
	process.stdout.write(`${JSON.stringify({ error: message })}\n`);
	process.exit(1);
}

async function bundle() {
	const result = await esbuild.build({
		entryPoints: [join(HERE, "page.js")],
		bundle: true,
		write: false,
		format: "esm",
		target: "es2022",
		logLevel: "silent",
	});
	return result.outputFiles[0].text;
}

// Calls `onEnd` at each line "end" on stdin; resolves at EOF.
function watchStdin(onEnd) {
	return new Promise((resolve) => {
		let pending = "";
		process.stdin.setEncoding("utf8");
		process.stdin.on("data", (chunk) => {
			pending += chunk;
			const lines = pending.split("\n");
			pending = lines.pop();
			if (lines.some((line) => line.trim() === "end")) onEnd();
		});
		process.stdin.on("end", resolve);
		process.stdin.on("error", resolve);
	});
}

async function openPage(browser, script, label) {
	const page = await browser.newPage();
	page.on("console", (msg) => process.stderr.write(`[${label} console.${msg.type()}] ${msg.text()}\n`));
	page.on("pageerror", (err) => process.stderr.write(`[${label} pageerror] ${err}\n`));
	await page.route(`${ORIGIN}/**`, (route) => {
		const path = new URL(route.request().url()).pathname;
		if (path === "/page.js") return route.fulfill({ contentType: "text/javascript", body: script });
		return route.fulfill({ contentType: "text/html", body: '<!doctype html><script type="module" src="/page.js"></script>' });
	});
	await page.goto(`${ORIGIN}/`);
	await page.waitForFunction(() => window.moqReady === true);
	return page;
}

async function main() {
	let job;
	try {
		job = JSON.parse(process.argv[2] ?? "");
	} catch (err) {
		fail(`the job must be JSON on argv[2]: ${err}`);
	}
	let pages = [];
	const endTracks = () => Promise.all(pages.map((page) => page.evaluate(() => window.moqEndTracks()).catch(() => {})));
	let endRequested = false;
	const stdinDone = watchStdin(() => {
		endRequested = true;
		endTracks();
	});
	const bundleStart = performance.now();
	const script = await bundle();
	const bundleMs = Math.round(performance.now() - bundleStart);
	const browser = await chromium.launch({
		executablePath: CHROMIUM,
		args: ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebTransport"],
		timeout: job.launch_timeout_ms,
	});
	try {
		pages = await Promise.all(job.tasks.map((task, i) => openPage(browser, script, `${task.role} ${i}`)));
		// An "end" read while the pages were loading.
		if (endRequested) endTracks();
		const runs = job.tasks.map((task, i) => pages[i].evaluate((t) => window.moqTask(t), task));
		const subscribers = runs.filter((_, i) => job.tasks[i].role !== "publish");
		// Publishers let go once the subscribers here and the caller (stdin EOF) are done.
		Promise.allSettled([...subscribers, stdinDone]).then(() =>
			Promise.all(pages.map((page) => page.evaluate(() => window.moqRelease()).catch(() => {}))),
		);
		const reports = await Promise.all(runs);
		const line = { chromium: browser.version(), moq_net: MOQ_NET, bundle_ms: bundleMs, pages: reports };
		process.stdout.write(`${JSON.stringify(line)}\n`);
	} finally {
		await browser.close();
	}
}

main().then(
	() => process.exit(0),
	(err) => fail(String(err?.stack ?? err)),
);
