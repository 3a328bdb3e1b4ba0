// The page the driver (run.mjs) loads into headless Chromium: it bundles the npm MoQ client
// (@moq/net) and exposes `window.moqTask(task)`, which connects to a relay over WebTransport
// (never the WebSocket fallback), publishes or subscribes to one track, and resolves to a
// plain JSON-able report. It must not decide what is correct: the Rust test compares.
import * as Moq from "@moq/net";

// splitmix64, the generator of tests/common (Rng): the same seed gives the same bytes there.
const MASK = (1n << 64n) - 1n;
class Rng {
	constructor(seed) {
		this.state = BigInt.asUintN(64, BigInt(seed));
	}
	next() {
		this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK;
		let z = this.state;
		z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
		z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
		return z ^ (z >> 31n);
	}
	// `len` bytes: whole little-endian u64s, the last one cut (as Rng::bytes does).
	bytes(len) {
		const words = Math.ceil(len / 8);
		const out = new Uint8Array(words * 8);
		const view = new DataView(out.buffer);
		for (let i = 0; i < words; i++) view.setBigUint64(i * 8, this.next(), true);
		return out.slice(0, len);
	}
}

// The timestamp (ms) of frame `frame` in group `group`, as tests/common's Payload stamps it.
const timestampMs = (group, frame) => group * 100 + frame;

// Frames up to this size are reported in full (hex); larger ones by length and SHA-256.
const HEX_LIMIT = 64;

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

async function describeFrame(frame) {
	const payload = frame.payload;
	const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", payload));
	const out = { len: payload.length, sha256: hex(digest), ts_ms: frame.timestamp.asMillis() };
	if (payload.length <= HEX_LIMIT) out.hex = hex(payload);
	return out;
}

// An error as text; an AggregateError (every transport failed) names each cause.
function describeError(err) {
	const text = String(err?.stack ?? err);
	if (!(err instanceof AggregateError)) return text;
	return `${text}: ${err.errors.map((e) => String(e?.message ?? e)).join("; ")}`;
}

function deadline(ms, what) {
	return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms));
}

const within = (ms, what, promise) => Promise.race([promise, deadline(ms, what)]);

async function connect(task) {
	const webtransport = {};
	if (task.fingerprint) webtransport.serverCertificateHashes = [{ algorithm: "sha-256", value: task.fingerprint }];
	if (task.protocols) webtransport.protocols = task.protocols;
	return Moq.Connection.connect(new URL(task.url), {
		webtransport,
		websocket: { enabled: false },
		signal: AbortSignal.timeout(task.timeout_ms),
	});
}

// Publishes `task.groups` (frame sizes per group, bytes from the seed) once a subscriber
// holds the track, then ends the track: at once when `task.end_at_once`, otherwise when
// `ending` settles; keeps the session open until `release` settles.
async function publish(conn, task, ending, release, report) {
	const broadcast = new Moq.Broadcast.Producer();
	const track = broadcast.createTrack(task.track, { latencyMax: task.timeout_ms });
	conn.publish(Moq.Path.from(task.broadcast), broadcast);
	await within(task.timeout_ms, "a subscriber for the track", (async () => {
		while (!track.used.peek()) await track.used.changed();
	})());
	const rng = new Rng(task.seed);
	task.groups.forEach((sizes, sequence) => {
		const group = track.appendGroup();
		if (group.sequence !== sequence) throw new Error(`appendGroup gave sequence ${group.sequence}, not ${sequence}`);
		sizes.forEach((size, index) => {
			group.writeFrame({ payload: rng.bytes(size), timestamp: Moq.Time.Timestamp.fromMillis(timestampMs(sequence, index)) });
		});
		group.close();
	});
	report.published_groups = task.groups.length;
	if (!task.end_at_once) await ending;
	track.close();
	await release;
	broadcast.close();
}

// Waits for the broadcast's announcement, subscribes, and reads groups until the track ends
// or `task.expect_groups` groups are complete.
async function subscribe(conn, task, report) {
	const path = Moq.Path.from(task.broadcast);
	const announced = conn.announced(path);
	await within(task.timeout_ms, `the announcement of ${task.broadcast}`, (async () => {
		for (;;) {
			const event = await announced.next();
			if (!event) throw new Error("announcements ended before the broadcast appeared");
			if (event.active && (event.path === path || event.path === "")) return;
		}
	})());
	announced.close();
	const broadcast = conn.consume(path);
	const sub = broadcast.subscribe(task.track, { priority: 0 });
	report.groups = [];
	report.end = "closed";
	await within(task.timeout_ms, "the track's groups", (async () => {
		for (;;) {
			if (task.expect_groups != null && report.groups.length >= task.expect_groups) {
				report.end = "count";
				return;
			}
			const group = await sub.recvGroup();
			if (!group) return;
			const frames = [];
			for (;;) {
				const frame = await group.readFrame();
				if (!frame) break;
				frames.push(await describeFrame(frame));
			}
			report.groups.push({ sequence: group.sequence, frames });
		}
	})());
	sub.close();
	broadcast.close();
}

// One task: { role: "publish" | "subscribe", url, fingerprint?, protocols?, broadcast, track,
// seed, groups, end_at_once?, expect_groups?, timeout_ms }. Publishers end their tracks on
// `window.moqEndTracks()` (unless `end_at_once`) and their sessions on `window.moqRelease()`.
function signal() {
	let fire;
	const fired = new Promise((resolve) => {
		fire = resolve;
	});
	return { fired, fire };
}
const ending = signal();
const released = signal();
window.moqEndTracks = () => ending.fire();
window.moqRelease = () => {
	ending.fire();
	released.fire();
};

window.moqTask = async (task) => {
	const report = { role: task.role };
	const started = performance.now();
	let conn;
	try {
		conn = await connect(task);
		report.version = conn.version;
		report.connect_ms = Math.round(performance.now() - started);
		if (task.role === "publish") await publish(conn, task, ending.fired, released.fired, report);
		else if (task.role === "subscribe") await subscribe(conn, task, report);
		else throw new Error(`unknown role ${task.role}`);
	} catch (err) {
		report.error = describeError(err);
	} finally {
		conn?.close();
	}
	report.elapsed_ms = Math.round(performance.now() - started);
	return report;
};
window.moqReady = true;
