/** Shared by the dialects' `uniqueKeys`: catalog rows grouped into one column list per index. */

/** Rows of (index, column in key order) → one column list per index; an index with an expression part (null column) is dropped. */
export function groupKeyColumns(rows: Array<[string, string | null]>): string[][] {
  const byIndex = new Map<string, Array<string | null>>();
  for (const [ix, col] of rows) byIndex.set(ix, [...(byIndex.get(ix) ?? []), col]);
  return [...byIndex.values()].filter((cols): cols is string[] => cols.every((c) => c !== null));
}
