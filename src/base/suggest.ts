/** Did-you-mean for words typed by hand: config keys, `--set` names. */

/** The candidate `word` was most likely meant as (same letters ignoring case, `_` for `-`, or at most 2 edits), or undefined. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase().replace(/_/g, '-');
  return candidates.find((k) => k.toLowerCase() === w || editDistance(k.toLowerCase(), w) <= 2);
}

export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}
