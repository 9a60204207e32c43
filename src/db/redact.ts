/**
 * Connection strings as they may be shown: never with their password. A URL is masked by hand,
 * not through WHATWG `new URL`, because the values that need it most are the ones that parser
 * gets wrong or refuses: an unencoded `@` or `#` in the password, a bad port, a broken `%`
 * escape. Masking too much is harmless; masking too little is a leak.
 */

const MASK = '****';

/** Query parameters whose value is a secret (libpq's password/sslpassword, drivers' variants). */
const SECRET_PARAM = /^(?:.*pass(?:word)?|pwd|passwd|.*secret|.*token)$/i;

/** Where a host (and port) could start: the text after the userinfo's `@`. */
const HOST_AND_REST = /^(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~%-]*)(?::[^/?#@]*)?(?:[/?#]|$)/;

/** Remove a password from a URL for display (userinfo and secret query parameters). */
export function redactUrl(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)(.*)$/s.exec(url);
  if (!m) return redactParams(url, /(^|[\s;])([A-Za-z_]*pass(?:word)?|pwd)=/i);
  const scheme = m[1]!;
  let rest = m[2]!;
  let userinfo = '';
  // The userinfo ends at the last `@` followed by something shaped like a host: a password may
  // hold `@`, `#`, `/` or `?` unencoded.
  for (let at = rest.lastIndexOf('@'); at >= 0; at = rest.lastIndexOf('@', at - 1)) {
    if (HOST_AND_REST.test(rest.slice(at + 1))) {
      userinfo = rest.slice(0, at + 1);
      rest = rest.slice(at + 1);
      break;
    }
    if (at === 0) break;
  }
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    if (colon >= 0 && colon < userinfo.length - 2) userinfo = `${userinfo.slice(0, colon)}:${MASK}@`;
  }
  return scheme + userinfo + redactQuery(rest);
}

/** Mask the value of each secret query parameter, up to the next `&name=` (an unencoded `&` or `#` may be part of it). */
function redactQuery(rest: string): string {
  const q = rest.indexOf('?');
  if (q < 0) return rest;
  return rest.slice(0, q + 1) + redactParams(rest.slice(q + 1), /(^|&)([^&=]*)=/);
}

function redactParams(text: string, param: RegExp): string {
  const names = new RegExp(param.source, `${param.flags.replace('g', '')}g`);
  let out = '';
  let last = 0;
  let masking = false;
  for (let m = names.exec(text); m; m = names.exec(text)) {
    if (!masking) out += text.slice(last, m.index + m[0].length);
    else if (isParamName(m[2]!)) out += `${MASK}${text.slice(m.index, m.index + m[0].length)}`;
    else continue; // still inside the secret value
    masking = SECRET_PARAM.test(safeDecode(m[2]!));
    last = m.index + m[0].length;
  }
  return masking ? `${out}${MASK}` : out + text.slice(last);
}

function isParamName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_.%-]*$/.test(name);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Mask every URL found in free text (a driver's message, an unexpected error). */
export function redactText(text: string): string {
  return text.replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'`<>]+/g, (url) => {
    const trail = /[.,;:)\]]+$/.exec(url)?.[0] ?? '';
    const core = trail ? url.slice(0, -trail.length) : url;
    return redactUrl(core) + trail;
  });
}

/** Whether a connection string carries a password of its own (not a `${VAR}` reference). */
export function hasLiteralPassword(connection: string): boolean {
  const literal = connection.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*\}/g, '');
  return redactUrl(literal) !== literal || redactText(literal) !== literal;
}
