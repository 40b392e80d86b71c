// Runs the Klaviyo component outside kosmo: transpiled by jco and executed by Node on
// @bytecodealliance/preview2-shim, an independent wasi-http implementation. The component gets
// its credentials and base URL only from the environment (`KLAVIYO_API_KEY`,
// `KLAVIYO_BASE_URL`), which the shim hands it through `wasi:cli/environment`.
//
//   node run.mjs <klaviyo_plugin.wasm>
//
// Calls every exported function once against whatever KLAVIYO_BASE_URL serves (the tests point
// it at `kosmo emulator`), checks each result's shape and one error, and prints one JSON line:
// {"functions": [...called...], "exported": [...], "errors": [...]}. Exits 1 on any failure.

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wasm = process.argv[2];
if (!wasm) {
  console.error('usage: node run.mjs <component.wasm>');
  process.exit(2);
}
for (const name of ['KLAVIYO_API_KEY', 'KLAVIYO_BASE_URL']) {
  if (!process.env[name]) {
    console.error(`${name} must be set: the component reads it from the environment`);
    process.exit(2);
  }
}

// Transpile next to node_modules, so the generated ES modules resolve the shim.
const out = join(here, 'out', String(process.pid));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const jco = join(here, 'node_modules', '@bytecodealliance', 'jco', 'dist', 'jco.js');
execFileSync(process.execPath, [jco, 'transpile', wasm, '-o', out, '--name', 'klaviyo', '--quiet'], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const { klaviyo } = await import(pathToFileURL(join(out, 'klaviyo.js')).href);

const called = [];
const failures = [];

function check(condition, what) {
  if (!condition) failures.push(what);
}

function call(name, args) {
  called.push(name);
  try {
    return klaviyo[name](args);
  } catch (e) {
    failures.push(`${name} threw: ${JSON.stringify(e.payload ?? String(e))}`);
    return undefined;
  }
}

function page(name, result) {
  check(result && Array.isArray(result.items), `${name} returns a page with items`);
  return result?.items ?? [];
}

const stamp = `${Date.now()}${process.pid}`;
const email = `jco${stamp}@example.com`;

const created = call('createProfile', {
  email,
  firstName: 'Ada',
  properties: JSON.stringify({ plan: 'pro' }),
});
check(created?.email === email, 'createProfile echoes the email');
const id = created?.id;

const got = call('getProfile', { profileId: id });
check(got?.id === id && JSON.parse(got?.properties ?? '{}').plan === 'pro', 'getProfile reads it back');

const updated = call('updateProfile', { profileId: id, lastName: 'Lovelace' });
check(updated?.lastName === 'Lovelace', 'updateProfile changes the last name');

check(page('listProfiles', call('listProfiles', { limit: 5 })).length > 0, 'listProfiles finds profiles');

const list = call('createList', { name: `jco ${stamp}` });
check(typeof list?.id === 'string', 'createList gives an id');

const subscribed = call('subscribeProfile', { listId: list?.id, email });
check(subscribed?.accepted === true, 'subscribeProfile is accepted');

const event = call('createEvent', {
  profileId: id,
  eventName: 'Placed Order',
  value: 42.5,
  properties: JSON.stringify({ order_id: 'A1' }),
});
check(event?.accepted === true, 'createEvent is accepted');

const events = page('listEvents', call('listEvents', { filter: `equals(profile_id,"${id}")` }));
check(events.length > 0, 'listEvents finds the event');
if (events.length > 0) {
  const one = call('getEvent', { eventId: events[0].id });
  check(one?.value === 42.5, 'getEvent reads the value');
}

check(page('listLists', call('listLists', {})).some((l) => l.id === list?.id), 'listLists shows the new list');
check(call('getList', { listId: list?.id })?.id === list?.id, 'getList reads the list');
check(page('listListProfiles', call('listListProfiles', { listId: list?.id })).length >= 0, 'listListProfiles pages');

const flows = page('listFlows', call('listFlows', {}));
check(flows.length > 0, 'listFlows finds the seeded flows');
if (flows.length > 0) {
  check(call('getFlow', { flowId: flows[0].id })?.id === flows[0].id, 'getFlow reads a flow');
}

page('listCampaigns', call('listCampaigns', {}));

if (typeof klaviyo.listMetrics === 'function') {
  page('listMetrics', call('listMetrics', {}));
}

// One error: Klaviyo's 404 arrives as the WIT error record, thrown with `payload`.
const errors = [];
try {
  klaviyo.getProfile({ profileId: 'NOPE' + stamp });
  failures.push('getProfile of a missing id did not throw');
} catch (e) {
  errors.push(e.payload);
  check(e.payload?.kind === 'not-found' && e.payload?.status === 404, 'a missing profile is not-found 404');
}

const exported = Object.keys(klaviyo).filter((k) => typeof klaviyo[k] === 'function').sort();
const missing = exported.filter((f) => !called.includes(f));
check(missing.length === 0, `every exported function was called (missing: ${missing.join(', ')})`);

rmSync(out, { recursive: true, force: true });
console.log(JSON.stringify({ functions: [...new Set(called)].sort(), exported, errors, failures }));
process.exit(failures.length === 0 ? 0 : 1);
