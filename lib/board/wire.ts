/**
 * What the board's server sends its page (JSON over /api and the event stream). Types only, free of Node, so that
 * the browser code (lib/board/client) and the server share them.
 */

export type { Point } from '../util/downsample.js'
import type { Point } from '../util/downsample.js'

export type RunStatus = 'running' | 'finished' | 'interrupted' | 'stopped'

export interface RunProgress {
  current_steps: number | null
  total_steps: number | null
  percentage: number | null
  elapsed_time: string | null
  remaining_time: string | null
}

export interface RunSummary {
  id: string
  name: string
  path: string
  status: RunStatus
  /** Why the board says so, in words ("process 4242 on this host is alive"). */
  statusReason: string
  progress: RunProgress
  /** The last logged values, exactly as in trainer_log.jsonl. */
  last: {
    step: number | null
    loss: number | null
    lr: number | null
    grad_norm: number | null
    throughput: number | null
    eval: Record<string, number>
  }
  lines: number
  skippedLines: number
  /** Milliseconds since the epoch of the log's last write. */
  updatedAt: number | null
}

export interface RunDetail extends RunSummary {
  /** The last complete line of trainer_log.jsonl, unchanged. */
  lastRecord: Record<string, unknown> | null
  meta: Record<string, unknown> | null
  results: {
    all: Record<string, unknown> | null
    interrupted: Record<string, unknown> | null
    eval: Record<string, unknown> | null
  }
  /** training_args.yaml as written. */
  config: string | null
  /** The end of running_log.txt. */
  logTail: string | null
  /** Downsampled for drawing (see series.ts), by series name; pointCounts has each series' full length. */
  series: Record<string, Point[]>
  pointCounts: Record<string, number>
}

export interface RunList {
  /** The folders the board was given, as given. */
  roots: string[]
  runs: RunSummary[]
}

/** The event stream's `records` event: lines appended to a run's trainer_log.jsonl. */
export interface AppendedRecords {
  id: string
  /** Lines of the log before these (0 with reset: the file was replaced and these are all of it). */
  from: number
  reset: boolean
  records: Record<string, unknown>[]
}
