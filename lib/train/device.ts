/**
 * Which device a training run uses when the config does not say: the first CUDA device when the loaded LibTorch
 * has CUDA and a GPU is visible (as transformers' Trainer does), else the CPU.
 */
import { LlamaproError } from '../errors.js'
import type { Device } from '../model/llama-model.js'

/** What `info().cuda` reports; only what the choice needs. */
export interface CudaReport {
  compiled: boolean
  available: boolean
  devices: readonly { index: number }[]
}

export interface DeviceChoice {
  device: Device
  /** Why, for the start line: "first CUDA device (NVIDIA ...)", "no GPU visible", ... */
  reason: string
}

/** `device: auto` (the default) → a concrete device; anything else is taken as given. */
export function chooseDevice(requested: string, cuda: CudaReport | null): DeviceChoice {
  if (requested !== 'auto') {
    if (!/^(cpu|cuda|cuda:\d+)$/.test(requested)) {
      throw new LlamaproError(
        'LLAMAPRO_TRAIN_CONFIG',
        `device must be auto, cpu, cuda or cuda:<n>, got ${JSON.stringify(requested)}`,
      )
    }
    return { device: requested as Device, reason: 'set by the device key' }
  }
  if (!cuda?.compiled) return { device: 'cpu', reason: 'LibTorch without CUDA' }
  if (!cuda.available || cuda.devices.length === 0)
    return { device: 'cpu', reason: 'LibTorch has CUDA but no GPU is visible' }
  const first = Math.min(...cuda.devices.map((d) => d.index))
  return { device: `cuda:${first}`, reason: 'first visible CUDA device' }
}
