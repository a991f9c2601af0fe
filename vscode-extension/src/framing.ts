// Newline-delimited framing: splits the bytes read from the socket into lines of at most 1 MiB.
// Pure (no IO), like `protocol/src/framing.rs`: bytes go in, complete lines come out. A line over
// the limit is reported once and then skipped up to its newline without being buffered, so a
// misbehaving peer cannot grow our memory. A `\r` before the newline is dropped; blank lines are
// skipped.

import { MAX_LINE_BYTES } from "./protocol";

export type Frame = { kind: "line"; line: Buffer } | { kind: "tooLong"; seen: number };

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class LineFramer {
  /** Bytes of the line being received, in the chunks they came in. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** True while the rest of an over-long line is thrown away. */
  private discarding = false;
  private discarded = 0;

  constructor(private readonly limit: number = MAX_LINE_BYTES) {}

  /** Feeds bytes; returns every frame they complete, in order. */
  push(data: Buffer): Frame[] {
    const frames: Frame[] = [];
    let start = 0;
    while (start < data.length) {
      const newline = data.indexOf(NEWLINE, start);
      const end = newline === -1 ? data.length : newline;
      const piece = data.subarray(start, end);
      if (this.discarding) {
        this.discarded += piece.length;
      } else if (this.buffered + piece.length > this.limit + 1) {
        // One byte of slack: a `\r` right before the newline does not count against the limit.
        this.discarding = true;
        this.discarded = this.buffered + piece.length;
        this.chunks = [];
        this.buffered = 0;
      } else if (piece.length > 0) {
        this.chunks.push(piece);
        this.buffered += piece.length;
      }
      if (newline === -1) break;
      start = newline + 1;
      frames.push(...this.endLine());
    }
    return frames;
  }

  private endLine(): Frame[] {
    if (this.discarding) {
      const seen = this.discarded;
      this.discarding = false;
      this.discarded = 0;
      return [{ kind: "tooLong", seen }];
    }
    let line = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    if (line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN) line = line.subarray(0, line.length - 1);
    if (line.length > this.limit) return [{ kind: "tooLong", seen: line.length }];
    if (line.length === 0) return [];
    return [{ kind: "line", line }];
  }
}

/** One message as it goes on the wire: the JSON text and a newline. Throws when over the limit. */
export function encodeLine(message: string): Buffer {
  const bytes = Buffer.from(`${message}\n`, "utf8");
  if (bytes.length - 1 > MAX_LINE_BYTES) {
    throw new RangeError(
      `message of ${bytes.length - 1} bytes is over the protocol's limit of ${MAX_LINE_BYTES} bytes per line`,
    );
  }
  return bytes;
}
