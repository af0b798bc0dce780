/**
 * Grafana's TypeScript types model string-valued settings (threshold modes, colour modes, value
 * mapping types, legend modes, ...) as TypeScript string enums, which a plain JSON string literal can
 * never be assigned to, although it is exactly what Grafana stores in a dashboard's JSON. FromJson<T>
 * is T with every such enum replaced by the union of its string values (`${Enum}`), recursively;
 * everything else (required keys, unknown keys in object literals, number/boolean/array types) is
 * checked exactly as T says.
 */
export type FromJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<FromJson<U>>
      : T extends object
        ? { [K in keyof T]: FromJson<T[K]> }
        : T;
