/**
 * Typed parsers for option values, used as commander `argParser`s by the command specs. A bad
 * value is a UsageError (exit 2) whose message names the flag, what it expects and what it got;
 * main renders it like any other error (also as JSON with --json, which commander has parsed by then).
 */
import { UsageError } from '../base/errors.js';

export interface IntegerRule {
  /** Smallest value allowed (none: any whole number ≥ 0). */
  min?: number;
  /** What the message says is expected, when "a whole number (≥ min)" does not say it best. */
  expects?: string;
  /** A line saying how to get it right. */
  hint?: string;
}

/** A whole number written in digits (no sign, no decimals, no exponent; `1,000` allowed), as `flag`'s value. */
export function parseInteger(flag: string, rule: IntegerRule = {}): (value: string) => number {
  const expects = rule.expects ?? (rule.min === undefined ? 'a whole number' : `a whole number ≥ ${rule.min}`);
  return (value) => {
    // Digits, or digits grouped by thousands as keyctl prints them (`1,000`).
    const digits = /^\d{1,3}(,\d{3})+$/.test(value) ? value.replace(/,/g, '') : value;
    const n = Number(digits);
    if (!/^\d+$/.test(digits) || !Number.isSafeInteger(n) || (rule.min !== undefined && n < rule.min)) {
      throw new UsageError(`${flag} expects ${expects}, found "${value}"`, rule.hint ?? `e.g. ${flag} ${Math.max(rule.min ?? 0, 1) * 500}`);
    }
    return n;
  };
}

/** A whole number ≥ 1. */
export function parsePositive(flag: string, hint?: string): (value: string) => number {
  return parseInteger(flag, { min: 1, hint });
}

/** Seconds, fractions allowed, more than 0 and at most `max`. */
export function parseSeconds(flag: string, max: number): (value: string) => number {
  return (value) => {
    const s = Number(value);
    if (!(s > 0 && s <= max)) throw new UsageError(`${flag} expects seconds between 0 and ${max}, found "${value}"`);
    return s;
  };
}

export interface Shard {
  index: number;
  count: number;
}

/** `I/N` with 0 ≤ I < N: this process's share of the key space. */
export function parseShard(flag: string): (value: string) => Shard {
  return (value) => {
    const m = /^(\d+)\/(\d+)$/.exec(value);
    if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) {
      throw new UsageError(
        `${flag} expects I/N with 0 ≤ I < N, found "${value}"`,
        `e.g. ${flag} 0/4 … ${flag} 3/4, one process each (in Kubernetes: ${flag} $JOB_COMPLETION_INDEX/4)`,
      );
    }
    return { index: Number(m[1]), count: Number(m[2]) };
  };
}

/** For an option that may be repeated: every value, in order. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A number default as help shows it: `(default: 0.5)`, without quotes like every default. */
export function shownAsBefore(value: number): string {
  return String(value);
}
