// A standard WebRTC SIP client (JsSIP, bundled here with esbuild) in headless Chromium
// registers over the PBX's /sip WebSocket, calls through its WebRTC gateway with a fake
// microphone (Chromium's beep), then takes a call from a plain SIP phone, then presses
// a key for the auto attendant. Started by the Rust test
// `sip_websocket::jssip_in_chromium_calls_through_the_webrtc_gateway`, which gives the
// server and the extension in the environment, and checks afterwards what the PBX
// received.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WS_URL = process.env.SIP_WS_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The PBX's own login page hosts JsSIP (Chromium's local-network checks refuse a
// WebSocket to the PBX from a page of another origin); loopback is a secure context
// where the microphone may be used.
const PAGE = WS_URL && `${WS_URL.replace(/^ws/, 'http').replace(/\/sip$/, '')}/admin/`;

test('JsSIP in Chromium registers over /sip and calls with audio both ways', { skip: !WS_URL && 'started by the Rust test only', timeout: 90_000 }, async (t) => {
  const jssip = esbuild.buildSync({
    entryPoints: [path.join(HERE, 'node_modules/jssip/lib/JsSIP.js')],
    bundle: true, format: 'iife', globalName: 'JsSIP', platform: 'browser', write: false, logLevel: 'error',
  }).outputFiles[0].text;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection'],
  });
  t.after(() => browser.close());
  // The panel's CSP rightly refuses inline scripts: JsSIP is the test's addition.
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  // What the page says shows where a failure happened.
  page.on('console', (msg) => t.diagnostic(`page: ${msg.text()}`));
  await page.goto(PAGE);
  await page.addScriptTag({ content: jssip });

  const outcome = await page.evaluate(async ({ debug, wsUrl, ext, secret, callee, seconds }) => {
    const host = new URL(wsUrl).hostname;
    if (debug) JsSIP.debug.enable('JsSIP:*');
    const ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(wsUrl)],
      uri: `sip:${ext}@${host}`,
      password: secret,
      register: true,
    });
    ua.on('newRTCSession', () => console.log('call started'));
    // Listening from the start: the caller may ring as soon as the first call is over.
    const incomingCall = new Promise((resolve) => {
      ua.on('newRTCSession', (e) => { if (e.originator === 'remote') resolve(e.session); });
    });
    await new Promise((resolve, reject) => {
      ua.on('registered', resolve);
      ua.on('registrationFailed', (e) => reject(new Error(`registration failed: ${e.cause}`)));
      ua.start();
    });
    const session = ua.call(`sip:${callee}@${host}`, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
    console.log('registered');
    session.on('progress', () => console.log('ringing'));
    session.on('accepted', () => console.log('answered'));
    session.connection?.addEventListener('iceconnectionstatechange', () => console.log(`ICE ${session.connection.iceConnectionState}`));
    await new Promise((resolve, reject) => {
      session.on('confirmed', resolve);
      session.on('failed', (e) => reject(new Error(`call failed: ${e.cause}`)));
    });
    console.log('confirmed');
    // Speak (the fake microphone beeps) while the far end records.
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const calling = await audioStats(session.connection);
    const ended = new Promise((resolve) => session.on('ended', resolve));
    session.terminate();
    await ended;

    // Then the PBX calls the browser (the Rust test's phone): answered, heard, hung up
    // by the caller.
    console.log('waiting for a call');
    const incoming = await incomingCall;
    console.log('incoming call');
    let called = null;
    let polling = null;
    // The browser holds and resumes once (re-INVITEs through the gateway).
    const held = { hold: false, unhold: false };
    incoming.on('hold', () => {
      held.hold = true;
      console.log('held');
      setTimeout(() => incoming.unhold(), 300);
    });
    incoming.on('unhold', () => { held.unhold = true; console.log('resumed'); });
    await new Promise((resolve, reject) => {
      incoming.on('confirmed', () => {
        console.log('answered the incoming call');
        setTimeout(() => incoming.hold(), 500);
        // Stats vanish with the connection: keep the latest.
        polling = setInterval(async () => { called = await audioStats(incoming.connection); }, 250);
      });
      incoming.on('ended', resolve);
      incoming.on('failed', (e) => reject(new Error(`incoming call failed: ${e.cause}`)));
      incoming.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
    });
    clearInterval(polling);

    // Last, DTMF through the gateway (RFC 4733): the auto attendant on 0 takes key 0 to
    // the operator, whose voicemail records the browser.
    const attendant = ua.call(`sip:0@${host}`, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
    await new Promise((resolve, reject) => {
      attendant.on('confirmed', resolve);
      attendant.on('failed', (e) => reject(new Error(`call to the attendant failed: ${e.cause}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    attendant.sendDTMF('0', { transportType: 'RFC2833', duration: 160 });
    console.log('pressed 0');
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const hungUp = new Promise((resolve) => attendant.on('ended', resolve));
    attendant.terminate();
    await hungUp;

    await new Promise((resolve) => {
      ua.on('unregistered', resolve);
      ua.stop();
    });
    return { calling, called, held };

    async function audioStats(connection) {
      const stats = await connection.getStats();
      const out = { received: 0, sent: 0, codec: '' };
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') out.received = s.packetsReceived;
        if (s.type === 'outbound-rtp' && s.kind === 'audio') out.sent = s.packetsSent;
        if (s.type === 'codec' && s.mimeType.startsWith('audio/') && !out.codec) out.codec = s.mimeType;
      });
      return out;
    }
  }, {
    debug: Boolean(process.env.SIP_DEBUG),
    wsUrl: WS_URL,
    ext: process.env.SIP_EXTENSION,
    secret: process.env.SIP_SECRET,
    callee: process.env.SIP_CALLEE,
    seconds: Number(process.env.SPEAK_SECONDS || 4),
  });
  t.diagnostic(`browser: ${JSON.stringify(outcome)}`);
  const { calling, called } = outcome;
  assert.ok(calling.sent > 100, `the browser sent audio to voicemail: ${JSON.stringify(outcome)}`);
  assert.ok(calling.received > 50, `the browser heard the greeting: ${JSON.stringify(outcome)}`);
  assert.match(calling.codec, /PCM[UA]/i, 'G.711 end to end, nothing transcoded');
  assert.ok(called && called.received > 50, `the browser heard its caller: ${JSON.stringify(outcome)}`);
  assert.ok(called.sent > 50, `the browser spoke to its caller: ${JSON.stringify(outcome)}`);
  assert.deepEqual(outcome.held, { hold: true, unhold: true }, 'the browser held and resumed');
  assert.deepEqual(problems, []);
});
