/**
 * The base64 check of the text ciphertext format (docs/format.md): standard alphabet, length a
 * multiple of 4, at most two `=` and only at the end. The same language as
 * `^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`; Node's own decoder is no
 * check, as it skips characters it does not know and also reads the URL-safe alphabet.
 *
 * A loop over a table instead of the regular expression `^[A-Za-z0-9+/]*={0,2}$` it replaced:
 * every value keyctl reads passes here, and the expression took 5–6% of a crypto worker's CPU
 * (docs/performance.md, "The base64 check"); once optimised, the loop checks a 300-character value
 * in about 40% of the expression's time.
 */
const ALPHABET = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') ALPHABET[c.charCodeAt(0)] = 1;
const EQUALS = 61;

export function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  let end = s.length;
  if (end > 0 && s.charCodeAt(end - 1) === EQUALS) {
    end--;
    if (s.charCodeAt(end - 1) === EQUALS) end--;
  }
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || ALPHABET[c] === 0) return false;
  }
  return true;
}
