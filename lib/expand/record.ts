/**
 * llamapro_expansion.json: written beside an expanded model, so that later tools (plan, verify, train) know
 * which layers are new blocks without guessing from their weights. Carried along to trained outputs.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { VERSION } from '../version.js'
import type { ExpansionPlan } from './plan.js'

export const EXPANSION_RECORD_FILE = 'llamapro_expansion.json'

export interface ExpansionRecord {
  created_by: string
  original_num_layers: number
  num_layers: number
  num_expand: number
  insert_after: number[]
  new_layer_ids: number[]
  /** For each new layer id: the original layer index it was copied from. */
  source_layer_of: Record<string, number>
}

export function expansionRecord(plan: ExpansionPlan): ExpansionRecord {
  const sourceOf: Record<string, number> = {}
  plan.newLayerIds.forEach((id, i) => {
    sourceOf[String(id)] = plan.insertAfter[i]!
  })
  return {
    created_by: `llamapro ${VERSION}`,
    original_num_layers: plan.originalNumLayers,
    num_layers: plan.numLayers,
    num_expand: plan.newLayerIds.length,
    insert_after: plan.insertAfter,
    new_layer_ids: plan.newLayerIds,
    source_layer_of: sourceOf,
  }
}

/** The record in `dir`, or undefined when there is none (or it is unreadable: it is advisory). */
export async function readExpansionRecord(dir: string): Promise<ExpansionRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(join(dir, EXPANSION_RECORD_FILE), 'utf8')) as ExpansionRecord
    return Array.isArray(record.new_layer_ids) ? record : undefined
  } catch {
    return undefined
  }
}
