/**
 * Encodes TensorBoard `Event` protobufs (tensorflow/core/util/event.proto) straight into TFRecord frames in one
 * growable byte buffer, without a protobuf library: the writer needs four message shapes, and computing their sizes
 * up front lets each byte be written once, in place.
 *
 * TFRecord frame: u64 LE payload length, masked CRC-32C of those 8 bytes (u32 LE), the payload, masked CRC-32C of
 * the payload (u32 LE).
 *
 * Fields used (number, wire type):
 *   Event            wall_time 1 double, step 2 int64, file_version 3 string, summary 5 Summary
 *   Summary          value 1 repeated Value
 *   Summary.Value    tag 1 string, simple_value 2 float, tensor 8 TensorProto, metadata 9 SummaryMetadata
 *   SummaryMetadata  plugin_data 1 PluginData { plugin_name 1 string }
 *   TensorProto      dtype 1 enum (DT_STRING = 7), tensor_shape 2 { dim 2 { size 1 int64 } }, string_val 8 bytes
 * A text summary is byte for byte what TensorBoard's own `text_pb` writes: plugin "text", a DT_STRING tensor of
 * shape [] (torch's add_text uses shape [1], which the Text tab shows inside a one-cell table).
 * Fields are written in field-number order, protobuf's canonical encoding.
 */
import { maskedCrc32c } from './crc32c.js'

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_BYTES = 2
const WIRE_FIXED32 = 5
const key = (field: number, wire: number): number => (field << 3) | wire

const EVENT_WALL_TIME = key(1, WIRE_FIXED64)
const EVENT_STEP = key(2, WIRE_VARINT)
const EVENT_FILE_VERSION = key(3, WIRE_BYTES)
const EVENT_SUMMARY = key(5, WIRE_BYTES)
const SUMMARY_VALUE = key(1, WIRE_BYTES)
const VALUE_TAG = key(1, WIRE_BYTES)
const VALUE_SIMPLE_VALUE = key(2, WIRE_FIXED32)
const VALUE_TENSOR = key(8, WIRE_BYTES)
const VALUE_METADATA = key(9, WIRE_BYTES)
const DT_STRING = 7

/** SummaryMetadata { plugin_data { plugin_name: "text" } }, and TensorProto's dtype + shape []: constant bytes. */
const TEXT_METADATA = Buffer.from([key(1, WIRE_BYTES), 6, key(1, WIRE_BYTES), 4, ...Buffer.from('text')])
const STRING_TENSOR_HEAD = Buffer.from([key(1, WIRE_VARINT), DT_STRING, key(2, WIRE_BYTES), 0])
const TENSOR_STRING_VAL = key(8, WIRE_BYTES)

const FRAME_HEAD = 12
const FRAME_TAIL = 4

/** Bytes of an unsigned varint (values up to 2^53, the safe-integer range). */
function varintSize(value: number): number {
  let size = 1
  while (value >= 0x80) {
    value = Math.floor(value / 128)
    size++
  }
  return size
}

export class EventRecordBuffer {
  private buffer: Buffer
  private view: DataView
  private used = 0

  constructor(initialBytes = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes)
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength)
  }

  /** Bytes of complete records waiting to be written. */
  get size(): number {
    return this.used
  }

  /** The complete records; valid until the next append or reset. */
  bytes(): Buffer {
    return this.buffer.subarray(0, this.used)
  }

  reset(): void {
    this.used = 0
  }

  /** The first event of every file: TensorBoard reads "brain.Event:2" as the format version. */
  appendFileVersion(version: string, wallTime: number): void {
    const versionBytes = Buffer.from(version, 'utf8')
    const payload = 9 + 1 + varintSize(versionBytes.length) + versionBytes.length
    let at = this.beginRecord(payload)
    at = this.putWallTime(at, wallTime)
    at = this.putByte(at, EVENT_FILE_VERSION)
    at = this.putVarint(at, versionBytes.length)
    this.putBytes(at, versionBytes)
    this.endRecord(payload)
  }

  /**
   * One Event holding one Summary with a simple_value per scalar (float32, as TensorBoard stores them).
   * `tags` (already UTF-8: they repeat every step, so callers cache them) and `values` are parallel; `count` of each.
   */
  appendScalars(
    tags: readonly Uint8Array[],
    values: readonly number[],
    count: number,
    step: number,
    wallTime: number,
  ): void {
    let summarySize = 0
    for (let i = 0; i < count; i++) {
      const tag = tags[i]!
      const valueSize = 1 + varintSize(tag.length) + tag.length + 5
      summarySize += 1 + varintSize(valueSize) + valueSize
    }
    const payload = this.eventHeadSize(step, summarySize) + summarySize
    let at = this.beginRecord(payload)
    at = this.putEventHead(at, wallTime, step, summarySize)
    for (let i = 0; i < count; i++) {
      const tag = tags[i]!
      const value = values[i]!
      at = this.putByte(at, SUMMARY_VALUE)
      at = this.putVarint(at, 1 + varintSize(tag.length) + tag.length + 5)
      at = this.putByte(at, VALUE_TAG)
      at = this.putVarint(at, tag.length)
      at = this.putBytes(at, tag)
      at = this.putByte(at, VALUE_SIMPLE_VALUE)
      this.view.setFloat32(at, value, true)
      at += 4
    }
    this.endRecord(payload)
  }

  /** One Event with a text-plugin summary: a DT_STRING tensor of shape [1] holding the UTF-8 text. */
  appendText(tag: Uint8Array, text: Uint8Array, step: number, wallTime: number): void {
    const tensorSize = STRING_TENSOR_HEAD.length + 1 + varintSize(text.length) + text.length
    const valueSize =
      1 + varintSize(tag.length) + tag.length + 1 + varintSize(tensorSize) + tensorSize + 1 + 1 + TEXT_METADATA.length
    const summarySize = 1 + varintSize(valueSize) + valueSize
    const payload = this.eventHeadSize(step, summarySize) + summarySize
    let at = this.beginRecord(payload)
    at = this.putEventHead(at, wallTime, step, summarySize)
    at = this.putByte(at, SUMMARY_VALUE)
    at = this.putVarint(at, valueSize)
    at = this.putByte(at, VALUE_TAG)
    at = this.putVarint(at, tag.length)
    at = this.putBytes(at, tag)
    at = this.putByte(at, VALUE_TENSOR)
    at = this.putVarint(at, tensorSize)
    at = this.putBytes(at, STRING_TENSOR_HEAD)
    at = this.putByte(at, TENSOR_STRING_VAL)
    at = this.putVarint(at, text.length)
    at = this.putBytes(at, text)
    at = this.putByte(at, VALUE_METADATA)
    at = this.putVarint(at, TEXT_METADATA.length)
    this.putBytes(at, TEXT_METADATA)
    this.endRecord(payload)
  }

  /** Step 0 is left out, as protobuf leaves out a proto3 field at its default: the encoding stays canonical. */
  private eventHeadSize(step: number, summarySize: number): number {
    return 9 + (step === 0 ? 0 : 1 + varintSize(step)) + 1 + varintSize(summarySize)
  }

  private putEventHead(at: number, wallTime: number, step: number, summarySize: number): number {
    at = this.putWallTime(at, wallTime)
    if (step !== 0) {
      at = this.putByte(at, EVENT_STEP)
      at = this.putVarint(at, step)
    }
    at = this.putByte(at, EVENT_SUMMARY)
    return this.putVarint(at, summarySize)
  }

  /** Makes room for a whole frame and writes its length and length CRC; returns where the payload starts. */
  private beginRecord(payload: number): number {
    const needed = this.used + FRAME_HEAD + payload + FRAME_TAIL
    if (needed > this.buffer.length) this.grow(needed)
    const start = this.used
    this.view.setUint32(start, payload % 0x1_0000_0000, true)
    this.view.setUint32(start + 4, Math.floor(payload / 0x1_0000_0000), true)
    this.view.setUint32(start + 8, maskedCrc32c(this.buffer, start, start + 8), true)
    return start + FRAME_HEAD
  }

  private endRecord(payload: number): void {
    const start = this.used + FRAME_HEAD
    this.view.setUint32(start + payload, maskedCrc32c(this.buffer, start, start + payload), true)
    this.used = start + payload + FRAME_TAIL
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2))
    this.buffer.copy(next, 0, 0, this.used)
    this.buffer = next
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength)
  }

  private putWallTime(at: number, wallTime: number): number {
    this.buffer[at] = EVENT_WALL_TIME
    this.view.setFloat64(at + 1, wallTime, true)
    return at + 9
  }

  private putByte(at: number, byte: number): number {
    this.buffer[at] = byte
    return at + 1
  }

  private putVarint(at: number, value: number): number {
    while (value >= 0x80) {
      this.buffer[at++] = (value % 128) | 0x80
      value = Math.floor(value / 128)
    }
    this.buffer[at++] = value
    return at
  }

  private putBytes(at: number, bytes: Uint8Array): number {
    this.buffer.set(bytes, at)
    return at + bytes.length
  }
}
