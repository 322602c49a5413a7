// The console calls the same public API as every client, with `Authorization: Bearer <key>`.
// The key lives in sessionStorage only: never in a URL, a cookie, localStorage or a log line.

const KEY = 'nluserve.key';

/** Where the API is: the console is served at <base>/console/, so the API is at <base>/. */
export const apiBase = window.location.pathname.replace(/\/console(\/.*)?$/, '');

// Every login and logout starts a new session epoch and aborts what the previous one still
// had in flight: an answer to a request made under another session is never drawn.
let epoch = 0;
let inFlight = new AbortController();
// NLUSERVE_AUTH=false: the API answers without a key (found by an unauthenticated GET
// /v1/models at start); there is no login, and no tenancy (usage, admin) to show.
let open = false;

function nextEpoch() {
  epoch += 1;
  inFlight.abort();
  inFlight = new AbortController();
}

export const session = {
  key() {
    return window.sessionStorage.getItem(KEY);
  },
  set(key) {
    window.sessionStorage.setItem(KEY, key);
    nextEpoch();
  },
  clear() {
    window.sessionStorage.removeItem(KEY);
    nextEpoch();
  },
  /** The current session epoch; pass it to call() to tie a chain of calls to one session. */
  epoch() {
    return epoch;
  },
  /** True when the server runs without authentication (NLUSERVE_AUTH=false). */
  open() {
    return open;
  },
  /** Ask the API whether it takes calls without a key: a 200 from GET /v1/models with none. */
  async probeOpen() {
    try {
      await call('GET', '/v1/models', { key: '' });
      open = true;
    } catch {
      open = false;
    }
    return open;
  },
  /** The id of the session's key (the 12 characters after `nlu_`), or null for a token. */
  keyId() {
    const match = /^nlu_([0-9A-Za-z]{12})_/.exec(this.key() || '');
    return match ? match[1] : null;
  },
};

/** Thrown instead of an answer that belongs to an ended session: callers draw nothing. */
export class Superseded extends Error {
  constructor() {
    super('superseded');
    this.name = 'Superseded';
  }
}

export function superseded(err) {
  return err instanceof Superseded;
}

/** An API error: HTTP status and the RFC 9457 problem body (type slug, title, detail). */
export class ApiError extends Error {
  constructor(status, problem, headers) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.headers = headers;
    this.slug = typeof problem.type === 'string' ? problem.type.split('/').pop() : '';
  }
}

/** 401 (key unknown, revoked, expired) and a disabled tenant end the session; other 403s
 * (admin only, model out of scope) are answers about one call, not about the key. */
export function endsSession(err) {
  return err.status === 401 || (err.status === 403 && err.slug === 'tenant-disabled');
}

/**
 * Call the API. Returns {status, headers, data, ms}; throws ApiError. With the session key,
 * an error that ends the session clears it and fires `nluserve:logout` with the error, and an
 * answer that arrives after a logout or login (or after the session `epoch` given) throws
 * Superseded instead: it belongs to a session that is over.
 */
export async function call(method, path, { body, key, epoch: given } = {}) {
  const usesSession = key === undefined;
  const mine = given ?? epoch;
  const stale = () => usesSession && mine !== epoch;
  if (stale()) throw new Superseded();
  const credential = usesSession ? session.key() : key;
  const headers = { Accept: 'application/json' };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const started = performance.now();
  let response;
  try {
    response = await fetch(apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
      signal: usesSession ? inFlight.signal : undefined,
    });
  } catch (cause) {
    if (stale()) throw new Superseded(); // aborted by a logout or login
    throw new ApiError(0, { title: 'network', detail: String(cause) });
  }
  let text;
  try {
    text = await response.text();
  } catch (cause) {
    if (stale()) throw new Superseded();
    throw new ApiError(0, { title: 'network', detail: String(cause) });
  }
  if (stale()) throw new Superseded();
  const ms = performance.now() - started;
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data && typeof data === 'object' ? data : {}, response.headers);
    if (usesSession && endsSession(err)) {
      session.clear();
      window.dispatchEvent(new CustomEvent('nluserve:logout', { detail: err }));
    }
    throw err;
  }
  return { status: response.status, headers: response.headers, data, ms };
}

/**
 * The server's time when it answered (the `Date` header), in ms since the epoch; the browser's
 * clock when there is none. Usage is counted per UTC day of the server's clock, and a browser's
 * clock can be off by minutes or days.
 */
export function serverTime(headers) {
  const at = Date.parse(headers?.get('Date') ?? '');
  return Number.isFinite(at) ? at : Date.now();
}

/**
 * Parse an IETF RateLimit / RateLimit-Policy structured field list:
 * `"daily";q=100;w=86400, "burst";q=20;w=2` -> {daily: {q: 100, w: 86400}, burst: {...}}.
 */
export function parseLimits(value) {
  const out = {};
  if (!value) return out;
  for (const item of value.split(',')) {
    const [rawName, ...params] = item.trim().split(';');
    const name = rawName.trim().replace(/^"|"$/g, '');
    if (!name) continue;
    const entry = {};
    for (const param of params) {
      const [k, v] = param.split('=');
      if (k && v !== undefined) entry[k.trim()] = Number(v.trim());
    }
    out[name] = entry;
  }
  return out;
}
