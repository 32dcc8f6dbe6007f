/**
 * Mean ± standard deviation over seeds, and the rule that decides which differences the report may state.
 *
 * The rule: two strategies differ in a figure only when their mean ± std intervals do not overlap, that is when
 * |mean(X) − mean(Y)| > std(X) + std(Y), with std the sample standard deviation over the seeds (n − 1 in the
 * denominator). Otherwise the difference is "within noise". With one seed there is no spread to compare with, so
 * nothing is stated ("cannot tell: one seed"). The rule is deliberately conservative (two intervals that just
 * touch are noise); it is not a significance test, and a sweep with few seeds will often say "within noise".
 */

export interface Spread {
  mean: number
  /** Sample standard deviation (n − 1); 0 for one value. */
  std: number
  n: number
}

export function spread(values: readonly number[]): Spread {
  const n = values.length
  if (n === 0) return { mean: NaN, std: NaN, n: 0 }
  const mean = values.reduce((s, v) => s + v, 0) / n
  const std = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : 0
  return { mean, std, n }
}

export type Verdict = 'less' | 'more' | 'noise' | 'one-seed'

/**
 * How X's figure compares with Y's: 'less' / 'more' when the intervals are apart, 'noise' when they overlap,
 * 'one-seed' when either side has a single value (no spread to judge by).
 */
export function compare(x: Spread, y: Spread): Verdict {
  if (x.n < 2 || y.n < 2) return 'one-seed'
  const difference = x.mean - y.mean
  if (Math.abs(difference) > x.std + y.std) return difference < 0 ? 'less' : 'more'
  return 'noise'
}

export const formatSpread = (s: Spread, digits = 3, signed = false) => {
  const mean = `${signed && s.mean >= 0 ? '+' : ''}${s.mean.toFixed(digits)}`
  return s.n > 1 ? `${mean} ± ${s.std.toFixed(digits)}` : mean
}

/**
 * One sentence about a figure of two strategies. `lower` is what X is said to do when its figure is lower
 * (e.g. "forgets less than"), `higher` when higher; the numbers are always given with the verdict.
 */
export function statement(
  x: { name: string; value: Spread },
  y: { name: string; value: Spread },
  lower: string,
  higher: string,
  what: string,
): { verdict: Verdict; text: string } {
  const verdict = compare(x.value, y.value)
  const numbers = `(${what}: ${formatSpread(x.value, 3, true)} vs ${formatSpread(y.value, 3, true)})`
  const text =
    verdict === 'less'
      ? `${x.name} ${lower} ${y.name} ${numbers}`
      : verdict === 'more'
        ? `${x.name} ${higher} ${y.name} ${numbers}`
        : verdict === 'noise'
          ? `${x.name} vs ${y.name}: ${what} within noise ${numbers}: |Δmean| ` +
            `${Math.abs(x.value.mean - y.value.mean).toFixed(3)} ≤ std sum ${(x.value.std + y.value.std).toFixed(3)}`
          : `${x.name} vs ${y.name}: ${what} cannot tell: one seed ${numbers}`
  return { verdict, text }
}
