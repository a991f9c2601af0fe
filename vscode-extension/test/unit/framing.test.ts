// The line framer: lines split across reads, several lines in one read, `\r\n`, blank lines, and
// over-long lines skipped without losing the next one.

import * as assert from "node:assert/strict";
import { test } from "node:test";

import { type Frame, LineFramer, encodeLine } from "../../src/framing";
import { MAX_LINE_BYTES } from "../../src/protocol";

function lines(frames: Frame[]): string[] {
  return frames.map((frame) => (frame.kind === "line" ? frame.line.toString("utf8") : `<too long: ${frame.seen}>`));
}

test("a line split over several reads comes out whole", () => {
  const framer = new LineFramer();
  assert.deepEqual(lines(framer.push(Buffer.from('{"a":'))), []);
  assert.deepEqual(lines(framer.push(Buffer.from("1"))), []);
  assert.deepEqual(lines(framer.push(Buffer.from('}\n{"b"'))), ['{"a":1}']);
  assert.deepEqual(lines(framer.push(Buffer.from(":2}\n"))), ['{"b":2}']);
});

test("several lines in one read, CRLF and blank lines", () => {
  const framer = new LineFramer();
  assert.deepEqual(lines(framer.push(Buffer.from("one\r\n\n\r\ntwo\nthree"))), ["one", "two"]);
  assert.deepEqual(lines(framer.push(Buffer.from("\n"))), ["three"]);
});

test("a multi-byte character split between reads survives", () => {
  const framer = new LineFramer();
  const bytes = Buffer.from("café\n", "utf8");
  assert.deepEqual(lines(framer.push(bytes.subarray(0, 4))), []);
  assert.deepEqual(lines(framer.push(bytes.subarray(4))), ["café"]);
});

test("an over-long line is reported once and skipped; the next line is read", () => {
  const framer = new LineFramer(8);
  assert.deepEqual(lines(framer.push(Buffer.from("12345678\n"))), ["12345678"]);
  assert.deepEqual(lines(framer.push(Buffer.from("12345678\r\n"))), ["12345678"], "a CR does not count");
  assert.deepEqual(lines(framer.push(Buffer.from("123456789"))), []);
  assert.deepEqual(lines(framer.push(Buffer.from("0".repeat(100)))), []);
  assert.deepEqual(lines(framer.push(Buffer.from("tail\nnext\n"))), ["<too long: 113>", "next"]);
});

test("the limit is the protocol's 1 MiB, newline excluded", () => {
  const framer = new LineFramer();
  const exactly = Buffer.concat([Buffer.alloc(MAX_LINE_BYTES, 0x61), Buffer.from("\n")]);
  assert.equal((framer.push(exactly)[0] as Frame).kind, "line");
  const over = Buffer.concat([Buffer.alloc(MAX_LINE_BYTES + 1, 0x61), Buffer.from("\nok\n")]);
  assert.deepEqual(
    framer.push(over).map((frame) => frame.kind),
    ["tooLong", "line"],
  );
});

test("encodeLine appends a newline and refuses messages over the limit", () => {
  assert.equal(encodeLine('{"a":1}').toString(), '{"a":1}\n');
  assert.throws(() => encodeLine("x".repeat(MAX_LINE_BYTES + 1)), /over the protocol's limit of 1048576 bytes/);
});
