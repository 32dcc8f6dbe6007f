/**
 * Learning-rate schedules as transformers' get_scheduler computes them (LambdaLR multipliers of the peak rate),
 * evaluated at the index of the optimizer step about to be taken: with warm-up the first step uses rate 0.
 */
export type ScheduleType = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup'

export function learningRateAt(
  step: number,
  totalSteps: number,
  warmupSteps: number,
  type: ScheduleType,
  peak: number,
): number {
  const warm = type === 'constant' ? 0 : warmupSteps
  if (step < warm) return (peak * step) / Math.max(1, warm)
  switch (type) {
    case 'constant':
    case 'constant_with_warmup':
      return peak
    case 'linear':
      return peak * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warm))
    case 'cosine': {
      const progress = (step - warm) / Math.max(1, totalSteps - warm)
      return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)))
    }
  }
}

/** warmup_steps when set, else ceil(warmup_ratio * total), as TrainingArguments.get_warmup_steps. */
export function warmupStepsFor(totalSteps: number, warmupSteps: number, warmupRatio: number): number {
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio)
}
