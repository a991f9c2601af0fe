// Small two-way codecs between JSON values and typed data, in the shape serde gives the Rust side:
// unknown fields are dropped, optional fields are left out when absent, defaulted fields are filled
// in. Decoding names the path of the first value that does not fit, e.g. `result.stages.copyMs`.
// No `vscode` import: this runs under plain Node in the unit tests.

export class CodecError extends Error {
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly actual: unknown,
  ) {
    super(`${path || "message"}: expected ${expected}, found ${describe(actual)}`);
    this.name = "CodecError";
  }
}

export interface Codec<T> {
  /** What the codec accepts, for error messages. */
  readonly expected: string;
  decode(value: unknown, path: string): T;
  encode(value: T): unknown;
}

export type Decoded<C> = C extends Codec<infer T> ? T : never;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

function primitive<T>(expected: string, accepts: (value: unknown) => value is T): Codec<T> {
  return {
    expected,
    decode(value, path) {
      if (!accepts(value)) throw new CodecError(path, expected, value);
      return value;
    },
    encode: (value) => value,
  };
}

export const string = primitive("a string", (value): value is string => typeof value === "string");
export const boolean = primitive("a boolean", (value): value is boolean => typeof value === "boolean");
export const number = primitive(
  "a number",
  (value): value is number => typeof value === "number" && Number.isFinite(value),
);
/** A non-negative integer (`u32`/`u64` on the Rust side). */
export const unsigned = primitive(
  "a non-negative integer",
  (value): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0,
);
/** A whole number, negative ones too (`i32`/`i64` on the Rust side). */
export const integer = primitive(
  "an integer",
  (value): value is number => typeof value === "number" && Number.isSafeInteger(value),
);
/** Any JSON value, kept as it is. */
export const json = primitive("any JSON value", (value): value is unknown => value !== undefined);

export function literal<const T extends string | number>(expected: T): Codec<T> {
  return primitive(JSON.stringify(expected), (value): value is T => value === expected);
}

export function oneOf<const T extends string>(values: readonly T[]): Codec<T> {
  return primitive(
    `one of ${values.map((value) => JSON.stringify(value)).join(", ")}`,
    (value): value is T => typeof value === "string" && (values as readonly string[]).includes(value),
  );
}

export function array<T>(item: Codec<T>): Codec<T[]> {
  return {
    expected: `an array of ${item.expected}`,
    decode(value, path) {
      if (!Array.isArray(value)) throw new CodecError(path, this.expected, value);
      return value.map((element, index) => item.decode(element, `${path}[${index}]`));
    },
    encode: (value) => value.map((element) => item.encode(element)),
  };
}

/** How an object field is read and written. `T` is its decoded type. */
interface Field<T, Optional extends boolean> {
  readonly codec: Codec<unknown>;
  /** Absent or `null` on the wire decodes to this (serde `default`); `undefined`: required. */
  readonly whenAbsent: (() => T) | undefined;
  /** Left out of the encoding when true (serde `skip_serializing_if`). */
  skip(value: T): boolean;
  /** True for `Option` fields, which may be missing from the decoded object. */
  readonly optional: Optional;
  /** Carries `T` for type inference only; never set. */
  readonly type?: T;
}

/** A required field. */
export function required<T>(codec: Codec<T>): Field<T, false> {
  return { codec, whenAbsent: undefined, skip: () => false, optional: false };
}

/** `Option<T>` with `skip_serializing_if = "Option::is_none"`: absent or null decodes to undefined. */
export function optional<T>(codec: Codec<T>): Field<T | undefined, true> {
  return { codec, whenAbsent: () => undefined, skip: (value) => value === undefined, optional: true };
}

/** A field with a default: absent decodes to `fallback()`, and it is always written. */
export function defaulted<T>(codec: Codec<T>, fallback: () => T): Field<T, false> {
  return { codec, whenAbsent: fallback, skip: () => false, optional: false };
}

/** A list that may be absent and is left out when empty (`default, skip_serializing_if = "Vec::is_empty"`). */
export function omittedWhenEmpty<T>(codec: Codec<T[]>): Field<T[], false> {
  return { codec, whenAbsent: () => [], skip: (value) => value.length === 0, optional: false };
}

type Fields = Record<string, Field<unknown, boolean>>;
type FieldValue<F> = F extends Field<infer T, boolean> ? T : never;
type OptionalKeys<F extends Fields> = { [K in keyof F]: F[K]["optional"] extends true ? K : never }[keyof F];
type RequiredKeys<F extends Fields> = Exclude<keyof F, OptionalKeys<F>>;
export type ObjectOf<F extends Fields> = { [K in RequiredKeys<F>]: FieldValue<F[K]> } & {
  [K in OptionalKeys<F>]?: Exclude<FieldValue<F[K]>, undefined>;
};

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function object<F extends Fields>(fields: F): Codec<ObjectOf<F>> {
  const entries = Object.entries(fields);
  return {
    expected: "an object",
    decode(value, path) {
      if (!isPlainObject(value)) throw new CodecError(path, "an object", value);
      const decoded: Record<string, unknown> = {};
      for (const [name, field] of entries) {
        const fieldPath = path ? `${path}.${name}` : name;
        const raw = value[name];
        if (raw === undefined || (raw === null && field.whenAbsent !== undefined)) {
          if (field.whenAbsent === undefined) throw new CodecError(fieldPath, field.codec.expected, raw);
          const fallback = field.whenAbsent();
          if (fallback !== undefined) decoded[name] = fallback;
          continue;
        }
        decoded[name] = field.codec.decode(raw, fieldPath);
      }
      return decoded as ObjectOf<F>;
    },
    encode(value) {
      const encoded: Record<string, unknown> = {};
      const record = value as Record<string, unknown>;
      for (const [name, field] of entries) {
        const fieldValue = record[name];
        if (field.skip(fieldValue)) continue;
        encoded[name] = field.codec.encode(fieldValue);
      }
      return encoded;
    },
  };
}

/**
 * An internally tagged union (serde `#[serde(tag = "...")]`): the tag field picks the variant, whose
 * other fields sit beside it.
 */
export function tagged<const Tag extends string, V extends Record<string, Fields>>(
  tag: Tag,
  variants: V,
): Codec<{ [K in keyof V & string]: { [T in Tag]: K } & ObjectOf<V[K]> }[keyof V & string]> {
  const codecs = Object.fromEntries(Object.entries(variants).map(([name, fields]) => [name, object(fields)]));
  const names = Object.keys(variants);
  type Union = { [K in keyof V & string]: { [T in Tag]: K } & ObjectOf<V[K]> }[keyof V & string];
  return {
    expected: `an object with "${tag}" one of ${names.join(", ")}`,
    decode(value, path) {
      if (!isPlainObject(value)) throw new CodecError(path, "an object", value);
      const variant = value[tag];
      const codec = typeof variant === "string" ? codecs[variant] : undefined;
      if (codec === undefined) {
        throw new CodecError(path ? `${path}.${tag}` : tag, `one of ${names.join(", ")}`, variant);
      }
      return { [tag]: variant, ...(codec.decode(value, path) as object) } as Union;
    },
    encode(value) {
      const variant = (value as Record<string, unknown>)[tag] as string;
      const codec = codecs[variant];
      if (codec === undefined) throw new Error(`cannot encode unknown ${tag} ${variant}`);
      return { [tag]: variant, ...(codec.encode(value) as object) };
    },
  };
}
